"""PGFL-KD's distillation losses: L_CL (Eq. 4) and the multi-part contrastive L_MCL (Eq. 5)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from occreid.utils.device import without_autocast


def consistency_loss(student: Tensor, teacher: Tensor, reduction: str = "mean") -> Tensor:
    """PGFL-KD Eq. 4: L_CL = ||f_G - sg(f_E)||^2, the teacher detached (no gradient reaches it).

    student, teacher (B, C). reduction "mean": squared error averaged over channels (the default, see
    docs/models.md: at C = 2048 the summed norm is ~C times larger and would dominate the ReID losses);
    "sum": the paper's squared L2 norm. Either way averaged over the batch.
    """
    sq = (student.float() - teacher.detach().float()).pow(2)  # (B, C)
    per_sample = sq.mean(dim=1) if reduction == "mean" else sq.sum(dim=1)
    return per_sample.mean()


def part_positive_mask(part_flip: Sequence[int], device: torch.device | None = None) -> Tensor:
    """(K, K) bool: P(i) = {i, flip(i)}, a part and its left/right mirror (Eq. 5); the rest are negatives."""
    k = len(part_flip)
    mask = torch.eye(k, dtype=torch.bool, device=device)
    mask[torch.arange(k, device=device), torch.as_tensor(part_flip, device=device)] = True
    return mask


def multi_part_contrastive_loss(
    f_g: Tensor,
    f_p: Tensor,
    positive: Tensor,
    visible: Tensor | None = None,
    similarity: str = "cosine",
    temperature: float = 0.1,
) -> Tensor:
    """PGFL-KD Eq. 5, the multi-part contrastive loss (multi-positive InfoNCE, Han et al. 2020):

        L = - sum_i log( sum_{j in P(i)} exp(s(f_g,j, f_p,i)) / sum_{j=1..K} exp(s(f_g,j, f_p,i)) )

    with s(a, b) = cos(a, b) / T ("cosine") or a . b / T ("dot"), summed over the parts i of an image and
    averaged over the batch. f_P is the teacher and is detached.

    f_g: (B, K, D) the K channel groups of f_G; f_p: (B, K, D) the SAB part features f_p,i;
    positive: (K, K) bool, positive[i, j] = j in P(i) (see `part_positive_mask`);
    visible: (B, K) bool, parts i to include (an invisible part's f_p,i carries no pose information);
             None = all parts.
    """
    with without_autocast(f_g):  # fp32 similarities also under autocast: / T magnifies their rounding
        f_g, f_p = f_g.float(), f_p.detach().float()
        if similarity == "cosine":
            f_g, f_p = F.normalize(f_g, dim=-1), F.normalize(f_p, dim=-1)
        logits = torch.einsum("bid,bjd->bij", f_p, f_g) / temperature  # (B, K_i, K_j): s(f_g,j, f_p,i)
    log_all = logits.logsumexp(dim=2)  # (B, K)
    log_pos = logits.masked_fill(~positive[None], float("-inf")).logsumexp(dim=2)  # (B, K)
    per_part = log_all - log_pos  # (B, K), each >= 0
    if visible is not None:
        per_part = per_part * visible.to(per_part.dtype)
    return per_part.sum(dim=1).mean()
