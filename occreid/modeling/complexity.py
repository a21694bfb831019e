"""Parameters and FLOPs of a model at test time (PGFL-KD Table 8).

FLOPs are counted with `torch.utils.flop_counter.FlopCounterMode`, which counts 2 FLOPs per multiply-add of
convolutions and matrix products (elementwise ops, BN, ReLU, pooling and softmax are not counted). Many
papers, including Table 8 of PGFL-KD, report multiply-adds as "FLOPs"; divide ours by 2 to compare.
"""

from __future__ import annotations

import torch
from torch import nn

from occreid.modeling.base import ReidMethod


def count_parameters(module: nn.Module) -> int:
    """Number of parameter elements (trainable or not; buffers such as BN running stats excluded)."""
    return sum(p.numel() for p in module.parameters())


def _device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


@torch.no_grad()
def count_flops(module: nn.Module, input_size: tuple[int, int, int, int] = (1, 3, 384, 128)) -> int:
    """FLOPs per image of `module(torch.zeros(input_size))` in eval mode (restored afterwards)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = module.training
    module.eval()
    try:
        x = torch.zeros(input_size, device=_device(module))
        with FlopCounterMode(display=False) as counter:
            module(x)
    finally:
        module.train(was_training)
    return counter.get_total_flops() // input_size[0]


def _centred_keypoints(batch: int, image_size: tuple[int, int], device: torch.device) -> torch.Tensor:
    """Plausible, all-visible keypoints for cost measurement: a column of points down the image centre."""
    h, w = image_size
    kpts = torch.zeros(batch, 17, 3, device=device)
    kpts[..., 0] = w / 2
    kpts[..., 1] = torch.linspace(0.1 * h, 0.9 * h, 17, device=device)
    kpts[..., 2] = 1.0
    return kpts


@torch.no_grad()
def inference_cost(
    method: ReidMethod, feature: str, image_size: tuple[int, int] = (384, 128)
) -> dict[str, int]:
    """{"params", "flops"} of the model part that computes test feature `feature` for one image.

    f_G: backbone (+ the f_G BN for neck_feat="after") - identical to `method.deploy()`.
    f_P / f_V: backbone + SAB (+ its BN when that feature has a BNNeck); f_F / f_E: backbone + the
    parameter-free FEB (+ f_E's BN). The pose estimator that the pose-based features also need at test time is
    NOT included (nor is heatmap rendering); add the estimator's own cost, as Table 8 does.
    """
    from torch.utils.flop_counter import FlopCounterMode

    if feature == "f_G":
        deployed = method.deploy()
        return {"params": count_parameters(deployed), "flops": count_flops(deployed, (1, 3, *image_size))}
    modules: list[nn.Module] = [method.backbone]
    if feature in ("f_P", "f_V"):
        modules.append(method.sab)
    head = feature[-1]
    if head in method.necks and method.cfg.model.neck_feat == "after":
        modules.append(method.necks[head].bn)
    was_training = method.training
    method.eval()
    try:
        device = _device(method)
        x = torch.zeros(1, 3, *image_size, device=device)
        with FlopCounterMode(display=False) as counter:
            method.extract(x, _centred_keypoints(1, image_size, device), feature)
    finally:
        method.train(was_training)
    return {"params": sum(count_parameters(m) for m in modules), "flops": counter.get_total_flops()}
