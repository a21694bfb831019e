"""The body-part semantics aligned branch (SAB, PGFL-KD section 3.3)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class SemanticsAlignedBranch(nn.Module):
    """f_p,k = ReLU(BN(W_k f_l,k)), W_k in R^{C/K x C};  f_P = [f_p,1, ..., f_p,K] in R^C.

    Channel group k of f_P describes body part k, so f_P is semantically aligned across images. One
    BatchNorm1d(C) over the concatenation equals K per-part BNs (BN is per channel); W_k has no bias (BN
    follows). Needs C divisible by K (ResNet-50: 2048 / 8 = 256; ResNet-18/34: 512 / 8 = 64).
    """

    def __init__(self, channels: int, num_parts: int) -> None:
        super().__init__()
        if channels % num_parts:
            raise ValueError(f"channels {channels} not divisible by num_parts {num_parts}")
        self.num_parts = num_parts
        self.proj = nn.ModuleList(
            nn.Linear(channels, channels // num_parts, bias=False) for _ in range(num_parts)
        )
        self.bn = nn.BatchNorm1d(channels)

    def forward(self, part_features: Tensor) -> Tensor:
        """part_features f_l (B, K, C) -> f_P (B, C)."""
        reduced = torch.cat([proj(part_features[:, k]) for k, proj in enumerate(self.proj)], dim=1)  # (B, C)
        return torch.relu(self.bn(reduced))
