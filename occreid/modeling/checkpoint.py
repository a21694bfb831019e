"""The checkpoint file: written atomically (occreid.utils.files), read with `torch.load(weights_only=True)`.

A checkpoint is a dict with `format`, `model` (state dict of the training method), `optimizer`, `scheduler`,
`scaler` (fp16 loss scale), `epoch` (epochs completed), `step`, `rng`, `config` (the resolved config),
`num_classes` and `best_map`.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from occreid.config import Config, build_config
from occreid.errors import OccreidError, torch_load_problem
from occreid.utils.files import atomic_write, remove_stale_temp_files

FORMAT = "occreid-checkpoint-v1"


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write `state` to `path` atomically and durably, so a crash mid-write never leaves a truncated
    checkpoint behind. Temp files of an earlier write that was killed are removed first."""
    remove_stale_temp_files(path)
    with atomic_write(path) as f:
        torch.save({"format": FORMAT, **state}, f)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by `save_checkpoint`; a missing, truncated or foreign file is an
    OccreidError."""
    path = Path(path)
    if path.is_dir():
        inside = [n for n in ("last.pt", "best.pt") if (path / n).is_file()]
        hint = f"; it holds {' and '.join(inside)}, e.g. {path / inside[0]}" if inside else ""
        raise OccreidError(f"checkpoint {path} is a folder, not a file: give the checkpoint file{hint}")
    if not path.is_file():
        raise OccreidError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise OccreidError(f"{path}: not loaded: {torch_load_problem(exc)}") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        raise OccreidError(
            f"{path} is truncated or not a torch checkpoint ({torch_load_problem(exc)})"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT or "model" not in state:
        raise OccreidError(
            f"{path} is not an occreid checkpoint (no '{FORMAT}' marker); to use foreign weights, "
            "give them as model.pretrained=PATH instead"
        )
    return state


def checkpoint_config(state: dict[str, Any], source: str | Path = "checkpoint") -> Config:
    return build_config(state["config"], source=f"config stored in {source}", stored=True)


def _model_summary(cfg: Config, num_classes: int | None) -> str:
    ids = f", {num_classes} training identities" if num_classes is not None else ""
    return f"{cfg.model.name} ({cfg.model.backbone}) on {cfg.data.dataset}{ids}"


def load_weights(
    method: nn.Module,
    state: dict[str, Any],
    path: str | Path,
    cfg: Config,
    stored: Config | None = None,
    num_classes: int | None = None,
    action: str = "resume",
    changed: tuple[str, ...] = (),
) -> None:
    """Load a checkpoint's `model` weights into `method` (built from `cfg`). Weights of another model,
    backbone or dataset (identity count) are an OccreidError that says what the checkpoint holds and what
    `cfg` asks for, instead of torch's load_state_dict traceback. `changed`: the overridden keys, named in the
    message."""
    stored = stored if stored is not None else checkpoint_config(state, path)
    own = method.state_dict()
    weights = state["model"]
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    wrong = [k for k in own if k in weights and tuple(weights[k].shape) != tuple(own[k].shape)]
    if not (missing or unexpected or wrong):
        method.load_state_dict(weights)
        return
    differs = [
        f"{key}={getattr(getattr(stored, s), f)} (config: {getattr(getattr(cfg, s), f)})"
        for key, (s, f) in {
            "model.name": ("model", "name"),
            "model.backbone": ("model", "backbone"),
            "data.dataset": ("data", "dataset"),
        }.items()
        if getattr(getattr(stored, s), f) != getattr(getattr(cfg, s), f)
    ]
    if num_classes is not None and state.get("num_classes") not in (None, num_classes):
        differs.append(f"{state['num_classes']} training identities (dataset: {num_classes})")
    counts = ", ".join(
        f"{len(keys)} {label} (e.g. {keys[0]})"
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("of another shape", wrong))
        if keys
    )
    cause = f"the checkpoint has {'; '.join(differs)}" if differs else f"weights {counts}"
    fix = (
        "resume only with the config the run was started with (its config.yaml), or start a new run without "
        "--resume"
        if action == "resume"
        else "evaluate with the checkpoint's own settings: drop the --set overrides that change the model"
        + (f" ({', '.join(changed)})" if changed else "")
    )
    raise OccreidError(
        f"cannot {action} from {path}: it holds {_model_summary(stored, state.get('num_classes'))}, "
        f"which does not fit {cfg.model.name} ({cfg.model.backbone}): {cause}; {fix}"
    )
