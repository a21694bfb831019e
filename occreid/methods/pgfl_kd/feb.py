"""The foreground-enhanced branch (FEB, PGFL-KD section 3.2, Eq. 2-4). It has no parameters of its own."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from occreid.utils.device import without_autocast


class ForegroundEnhancedBranch(nn.Module):
    """Pose-guided attentive pooling: f_L = mean of the visible parts' f_l,k (the paper: sum_k f_l,k / K),

        a_ij = softmax_ij( s(F_ij, f_L) / T )        (Eq. 2)
        f_F  = sum_ij a_ij F_ij                        (Eq. 3)      and  f_E = f_F + f_G  (done by the caller)

    s is the cosine similarity ("cosine", the default, as the paper's text says) or the dot product ("dot",
    as Eq. 2 is written). Why cosine with T = 0.1: F is post-ReLU with C = 2048, so F_ij . f_L is in the
    hundreds and the softmax collapses to a one-hot argmax (unstable, near-zero gradients); the cosine lies in
    [0, 1] for non-negative features, so with T = 0.1 the logits span at most 10 - a peaked but smooth map.
    Averaging over the visible parts only (instead of dividing by K) keeps f_L's scale independent of how many
    parts are occluded; with the cosine it only changes the scale, not the attention.
    """

    def __init__(self, similarity: str = "cosine", temperature: float = 0.1) -> None:
        super().__init__()
        if similarity not in ("cosine", "dot"):
            raise ValueError(f"feb similarity must be cosine or dot, got {similarity!r}")
        self.similarity = similarity
        self.temperature = temperature

    def query(self, part_features: Tensor, visible: Tensor) -> Tensor:
        """f_L (B, C) from part_features (B, K, C) and visible (B, K) bool; zero when no part is visible."""
        weights = visible.to(part_features.dtype)[..., None]  # (B, K, 1)
        return (part_features * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)

    def attention(self, feature_map: Tensor, f_l: Tensor) -> Tensor:
        """Eq. 2: (B, C, h, w), f_L (B, C) -> a (B, h, w), summing to 1 over positions."""
        b, _, h, w = feature_map.shape
        flat = feature_map.flatten(2)  # (B, C, N)
        with without_autocast(flat):  # fp32 similarities also under autocast: / T magnifies their rounding
            flat32, f_l = flat.float(), f_l.float()
            if self.similarity == "cosine":
                sim = torch.einsum(
                    "bcn,bc->bn", F.normalize(flat32, dim=1), F.normalize(f_l, dim=1)
                )  # (B, N)
            else:
                sim = torch.einsum("bcn,bc->bn", flat32, f_l)
            return (sim / self.temperature).softmax(dim=1).to(flat.dtype).view(b, h, w)

    def forward(self, feature_map: Tensor, part_features: Tensor, visible: Tensor) -> Tensor:
        """F (B, C, h, w), f_l (B, K, C), visible (B, K) -> f_F (B, C) (Eq. 3)."""
        attn = self.attention(feature_map, self.query(part_features, visible))  # (B, h, w)
        return torch.einsum("bchw,bhw->bc", feature_map, attn)
