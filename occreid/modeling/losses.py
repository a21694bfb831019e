"""Losses of the baseline and PGFL-KD: ReID losses (ID cross-entropy with label smoothing, batch-hard
triplet), the consistency loss (PGFL-KD Eq. 4) and the multi-part contrastive loss (Eq. 5).

All return a scalar averaged over the batch.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from occreid.utils.device import without_autocast


def cross_entropy_label_smoothing(logits: Tensor, targets: Tensor, epsilon: float = 0.1) -> Tensor:
    """Cross-entropy against the smoothed target q = (1 - eps) * onehot(y) + eps / N (Szegedy et al.; BoT).

    logits (B, N), targets (B,) long. Equals `F.cross_entropy(logits, targets, label_smoothing=eps)`.
    """
    log_p = logits.float().log_softmax(dim=1)  # (B, N)
    nll = -log_p.gather(1, targets[:, None]).squeeze(1)  # (B,)
    uniform = -log_p.mean(dim=1)  # (B,)  = sum_j -(1/N) log p_j
    return ((1.0 - epsilon) * nll + epsilon * uniform).mean()


def pairwise_euclidean(x: Tensor) -> Tensor:
    """x (B, D) -> (B, B) Euclidean distances; the clamp keeps the gradient finite on the zero diagonal.

    In fp32 also inside autocast: d^2 = |a|^2 + |b|^2 - 2 a.b cancels catastrophically in bf16 / fp16 for
    nearly parallel features (ViT class tokens share a large common component), and batch-hard mining would
    rank rounding noise."""
    with without_autocast(x):
        x = x.float()
        sq = x.pow(2).sum(dim=1)  # (B,)
        d2 = sq[:, None] + sq[None, :] - 2.0 * x @ x.t()
        return d2.clamp(min=1e-12).sqrt()


def batch_hard_triplet_loss(features: Tensor, pids: Tensor, margin: float | None = 0.3) -> Tensor:
    """Batch-hard triplet loss (Hermans et al. 2017) on un-normalised features.

    For each anchor a: d_ap = max over same-identity samples, d_an = min over other identities, and
    loss_a = max(0, d_ap - d_an + margin), or softplus(d_ap - d_an) (soft margin) when margin is None.
    features (B, D), pids (B,). An anchor without negatives contributes 0 (d_an = +inf).
    """
    dist = pairwise_euclidean(features)  # (B, B)
    same = pids[:, None] == pids[None, :]  # (B, B), includes the anchor itself (distance ~0)
    d_ap = dist.masked_fill(~same, float("-inf")).amax(dim=1)  # (B,)
    d_an = dist.masked_fill(same, float("inf")).amin(dim=1)  # (B,)
    gap = d_ap - d_an
    loss = F.softplus(gap) if margin is None else F.relu(gap + margin)
    return loss.mean()
