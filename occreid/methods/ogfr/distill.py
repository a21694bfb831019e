"""Reinforced knowledge distillation from the purified teacher to the student (docs/ogfr.md section 5). The
teacher side is always detached: the student learns from the teacher, never the reverse.

    L_feat  = 1 - cos(f_S, sg(f_T))  or  ||f_S - sg(f_T)||^2 / D          global features (B, D)
    L_logit = T^2 KL(softmax(sg(z_T) / T) || softmax(z_S / T))           BNNeck logits (B, C)
    L_token = the same distance per patch token, over patches the occluder does not cover and the agent kept
"""

from __future__ import annotations

from torch import Tensor
from torch.nn import functional as F


def feature_distance(student: Tensor, teacher: Tensor, kind: str) -> Tensor:
    """Per-row distance (...,) between student and sg(teacher) features (..., D): "cosine" or "mse"."""
    teacher = teacher.detach()
    if kind == "cosine":
        return 1.0 - F.cosine_similarity(student, teacher, dim=-1)
    return (student - teacher).pow(2).mean(dim=-1)


def feature_distillation(student: Tensor, teacher: Tensor, kind: str) -> Tensor:
    """(B, D), (B, D) -> scalar."""
    return feature_distance(student, teacher, kind).mean()


def logit_distillation(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """Hinton's KD: T^2 KL(p_T || p_S) at temperature T, averaged over the batch."""
    log_p_student = F.log_softmax(student_logits / temperature, dim=1)
    p_teacher = F.softmax(teacher_logits.detach() / temperature, dim=1)
    return F.kl_div(log_p_student, p_teacher, reduction="batchmean") * temperature**2


def token_distillation(student_tokens: Tensor, teacher_tokens: Tensor, keep: Tensor, kind: str) -> Tensor:
    """Patch tokens (B, N, D) of both, keep (B, N) bool: the mean distance over kept patches (0 if none)."""
    distance = feature_distance(student_tokens, teacher_tokens, kind)  # (B, N)
    keep = keep.to(distance.dtype)
    return (distance * keep).sum() / keep.sum().clamp(min=1.0)
