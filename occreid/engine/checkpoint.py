"""Checkpoints: written atomically (temp file + rename), read with `torch.load(weights_only=True)`.

A checkpoint is a dict with `format`, `model` (state dict of the training method), `optimizer`, `scheduler`,
`scaler` (fp16 loss scale), `epoch` (epochs completed), `step`, `rng`, `config` (the resolved config), `num_classes` and `best_map`.
"""

from __future__ import annotations

import glob
import hashlib
import os
import pickle
import random
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from occreid.config import Config, build_config
from occreid.errors import OccreidError, torch_load_problem

FORMAT = "occreid-checkpoint-v1"


def remove_stale_temp_files(path: str | Path) -> list[Path]:
    """Delete the temp files `save_checkpoint(path)` leaves when it is killed mid-write (`<name>*.tmp` beside
    `path`). Only one process writes a given checkpoint, so any such file is left over. Returns what it removed."""
    path = Path(path)
    stale = sorted(path.parent.glob(f"{glob.escape(path.name)}*.tmp")) if path.parent.is_dir() else []
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return stale


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file's bytes: what identifies a checkpoint or a weight file (new weights at the same path
    get a new hash)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write `state` to `path` atomically and durably: a temp file in the same folder, flushed to disk (fsync),
    then a rename, so a crash mid-write never leaves a truncated checkpoint behind. Temp files of an earlier
    write that was killed are removed first."""
    from occreid.pose.store import _fsync_dir, _umask

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, **state}, f)
            f.flush()
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp made it 0o600; os.replace would keep that
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by `save_checkpoint`; a missing, truncated or foreign file is an OccreidError."""
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


def rng_state() -> dict[str, Any]:
    """RNG states of torch (CPU and CUDA), numpy and Python, in a form `weights_only` loading accepts."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2])},
        "python": random.getstate()[1],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    keys = state["numpy"]["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, state["numpy"]["pos"], 0, 0.0))
    random.setstate((3, tuple(state["python"]), None))


def checkpoint_config(state: dict[str, Any], source: str | Path = "checkpoint") -> Config:
    return build_config(state["config"], source=f"config stored in {source}")


def load_method(
    path: str | Path, device: str | torch.device = "cpu", overrides: list[str] | None = None
) -> tuple[nn.Module, Config]:
    """The training method (with all branches) from a checkpoint, in eval mode. `overrides` (`key=value`)
    change evaluation settings such as `model.test_feature` or `eval.rerank` on top of the stored config."""
    from occreid.config import apply_overrides
    from occreid.modeling import build_model

    state = load_checkpoint(path)
    cfg = checkpoint_config(state, path)
    if overrides:
        cfg = apply_overrides(cfg, overrides)
    cfg.model.pretrained = False  # the checkpoint holds the weights
    method = build_model(cfg, num_classes=state["num_classes"])
    load_weights(method, state, path, cfg, checkpoint_config(state, path), action="evaluate")
    return method.to(device).eval(), cfg


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
) -> None:
    """Load a checkpoint's `model` weights into `method` (built from `cfg`). Weights of another model, backbone
    or dataset (identity count) are an OccreidError that says what the checkpoint holds and what `cfg` asks for,
    instead of torch's load_state_dict traceback."""
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
        else "drop the --set overrides of model.* that differ from the checkpoint"
    )
    raise OccreidError(
        f"cannot {action} from {path}: it holds {_model_summary(stored, state.get('num_classes'))}, "
        f"which does not fit {cfg.model.name} ({cfg.model.backbone}): {cause}; {fix}"
    )


def load_deployed_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, Config]:
    """The pose-free deployed module (images -> (B, D) features) of a checkpoint, and its config."""
    method, cfg = load_method(path, "cpu")
    return method.deploy().to(device).eval(), cfg
