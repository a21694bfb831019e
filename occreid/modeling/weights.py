"""Reading a weights file and loading it into a module: one path for the CNN backbones, the ViTs and the
hybrid ViT's stem. Files are read with `torch.load(weights_only=True)` (or safetensors): a pickle that would
run code is refused."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from occreid.errors import OccreidError, torch_load_problem
from occreid.utils.hashing import file_sha256


def read_state_dict(path: str | Path, what: str = "model.pretrained:", fix: str = "") -> dict[str, Tensor]:
    """The tensors of a .safetensors or PyTorch file, unwrapped from a `state_dict` / `model` entry and
    without DDP's `module.` prefix. An unreadable file is an OccreidError that starts with `what` and ends
    with `fix`."""
    path = Path(path)
    fix = fix or "give a state dict saved with torch.save, or a .safetensors file"
    if path.is_dir():
        raise OccreidError(f"{what} {path} is a folder, not a weights file; {fix}")
    if not path.is_file():
        raise OccreidError(
            f"{what} weights file {path} does not exist ({fix}, true for the ImageNet weights, or false)"
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise OccreidError(
            f"{what} {path} cannot be read as a PyTorch state dict ({torch_load_problem(exc)}); {fix}"
        ) from None
    for key in ("state_dict", "model"):  # common checkpoint wrappers
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise OccreidError(f"{what} {path} holds a {type(state).__name__}, not a state dict; {fix}")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_matching(
    module: nn.Module,
    state: dict[str, Tensor],
    source: str,
    target: str,
    drop: tuple[str, ...] = (),
    file: str | Path | None = None,
) -> None:
    """Load `state` into `module` after dropping the keys that start with `drop` (a classifier); any other
    missing or unexpected key or shape mismatch is an OccreidError: "`source` does not fit `target`: ...".
    Prints one line: which weights (`file` and its sha256), and how many tensors matched."""
    given = len(state)
    state = {k: v for k, v in state.items() if not k.startswith(drop)} if drop else state
    own = module.state_dict()
    problems = {
        "missing keys": [k for k in own if k not in state],
        "unexpected keys": [k for k in state if k not in own],
        "shape mismatches": [
            f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}"
            for k, v in state.items()
            if k in own and v.shape != own[k].shape
        ],
    }
    parts = [
        f"{len(keys)} {label} ({', '.join(keys[:4])}{', ...' if len(keys) > 4 else ''})"
        for label, keys in problems.items()
        if keys
    ]
    if parts:
        raise OccreidError(f"model.pretrained: {source} does not fit {target}: " + "; ".join(parts))
    module.load_state_dict(state)
    name = source if file is None or str(file) == source else f"{source}, {file}"
    digest = f" (sha256 {file_sha256(Path(file))[:16]}...)" if file is not None else ""
    dropped = f", {given - len(state)} dropped ({', '.join(drop)})" if given > len(state) else ""
    print(f"weights: {name}{digest}; {len(state)} of {len(own)} tensors of {target} matched{dropped}")
