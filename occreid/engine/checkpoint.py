"""Checkpoints: written atomically (temp file + rename), read with `torch.load(weights_only=True)`.

A checkpoint is a dict with `format`, `model` (state dict of the training method), `optimizer`, `scheduler`,
`scaler` (fp16 loss scale), `epoch` (epochs completed), `step`, `rng`, `config` (the resolved config), `num_classes` and `best_map`.
"""

from __future__ import annotations

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
from occreid.errors import OccreidError

FORMAT = "occreid-checkpoint-v1"


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write `state` to `path` atomically: a crash mid-write never leaves a truncated checkpoint behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, **state}, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by `save_checkpoint`; a missing, truncated or foreign file is an OccreidError."""
    path = Path(path)
    if not path.is_file():
        raise OccreidError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise OccreidError(f"{path} is truncated or not a torch checkpoint ({first[:160]})") from None
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
    missing, unexpected = method.load_state_dict(state["model"], strict=False)
    if missing or unexpected:
        raise OccreidError(
            f"{path}: weights do not fit model '{cfg.model.name}' ({cfg.model.backbone}): "
            f"{len(missing)} missing keys (e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]})"
        )
    return method.to(device).eval(), cfg


def load_deployed_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, Config]:
    """The pose-free deployed module (images -> (B, D) features) of a checkpoint, and its config."""
    method, cfg = load_method(path, "cpu")
    return method.deploy().to(device).eval(), cfg
