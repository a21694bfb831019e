"""The main optimiser and its per-epoch learning-rate schedule."""

from __future__ import annotations

import math
from typing import Any

import torch

from occreid.config import Config


def build_optimizer(cfg: Config, groups: list[dict]) -> torch.optim.Optimizer:
    """The main optimiser (train.optimizer, train.lr) over a method's parameter groups."""
    t = cfg.train
    if t.optimizer == "adam":
        return torch.optim.Adam(groups, lr=t.lr)
    return torch.optim.SGD(groups, lr=t.lr, momentum=t.momentum)


def build_optimizers(
    cfg: Config, method: Any
) -> tuple[torch.optim.Optimizer, dict[str, torch.optim.Optimizer]]:
    """The main optimiser and the method's own ones (e.g. OGFR's agent), whose parameters the main one leaves
    out."""
    extra = method.extra_optimizers()
    owned = {id(p) for opt in extra.values() for group in opt.param_groups for p in group["params"]}
    return build_optimizer(cfg, method.parameter_groups(cfg.train.weight_decay, exclude=owned)), extra


def lr_factor(cfg: Config, epoch: int) -> float:
    """The learning-rate factor of a 0-based epoch: linear warm-up from warmup_factor over warmup_epochs, then
    x gamma at each milestone ("step", the strong baseline's) or a half cosine from 1 down to
    cosine_min_factor at the last epoch ("cosine", TransReID's)."""
    t = cfg.train
    if epoch < t.warmup_epochs:
        alpha = epoch / t.warmup_epochs
        warm = t.warmup_factor * (1 - alpha) + alpha
    else:
        warm = 1.0
    if t.schedule == "step":
        return warm * t.gamma ** sum(epoch >= m for m in t.milestones)
    if epoch < t.warmup_epochs:
        return warm
    progress = (epoch - t.warmup_epochs) / max(1, t.epochs - 1 - t.warmup_epochs)
    return t.cosine_min_factor + (1 - t.cosine_min_factor) * 0.5 * (
        1 + math.cos(math.pi * min(progress, 1.0))
    )


def build_scheduler(cfg: Config, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-epoch schedule of the main optimiser (`lr_factor`)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: lr_factor(cfg, epoch))
