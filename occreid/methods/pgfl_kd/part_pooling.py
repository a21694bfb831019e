"""Pose-guided part pooling (PGFL-KD Eq. 1)."""

from __future__ import annotations

import torch
from torch import Tensor


def part_pooling(feature_map: Tensor, heatmaps: Tensor) -> Tensor:
    """Eq. 1: f_l,k = sum_ij H_k(i, j) F_ij, k = 1..K.

    The paper writes f_l,k = g(F ⊙ H_k) with g = global average pooling; since each H_k is softmax-normalised
    (sums to 1 over positions) that is this weighted sum divided by h*w. We use the weighted sum itself, the
    scale-correct attention pooling: f_l,k then has the magnitude of the features under part k, independent
    of the feature-map size. An all-zero H_k (invisible group) gives f_l,k = 0.

    feature_map F: (B, C, h, w); heatmaps H: (B, K, h, w) -> (B, K, C).
    """
    return torch.einsum("bchw,bkhw->bkc", feature_map, heatmaps.to(feature_map.dtype))
