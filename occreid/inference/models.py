"""Loading a trained model for inference: the training method with every branch, or the deployed f_G
module."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from occreid.config import Config, apply_overrides
from occreid.methods import build_model
from occreid.modeling.checkpoint import checkpoint_config, load_checkpoint, load_weights


def load_method(
    path: str | Path, device: str | torch.device = "cpu", overrides: list[str] | None = None
) -> tuple[nn.Module, Config]:
    """The training method (with all branches) from a checkpoint, in eval mode. `overrides` (`key=value`)
    change evaluation settings such as `model.test_feature` or `eval.rerank` on top of the stored config."""
    state = load_checkpoint(path)
    cfg = checkpoint_config(state, path)
    if overrides:
        cfg = apply_overrides(cfg, overrides)
    cfg.model.pretrained = False  # the checkpoint holds the weights
    method = build_model(cfg, num_classes=state["num_classes"])
    changed = tuple(
        k for k in (t.split("=", 1)[0] for t in overrides or []) if not k.startswith("data.test_")
    )
    load_weights(method, state, path, cfg, checkpoint_config(state, path), action="evaluate", changed=changed)
    return method.to(device).eval(), cfg


def load_deployed_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, Config]:
    """The pose-free deployed module (images -> (B, D) features) of a checkpoint, and its config."""
    method, cfg = load_method(path, "cpu")
    return method.deploy().to(device).eval(), cfg
