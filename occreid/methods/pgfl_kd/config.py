"""PGFL-KD's config section, `pgfl_kd.*`: the paper's ablation switches (Table 6 / Table 7) and loss
weights."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from occreid.config_fields import Section


class PGFLKDConfig(Section):
    num_parts: int = Field(8, ge=1)  # K body parts, SAB's part features; the pose heatmaps have 8 groups
    # Ablation switches (Table 6 / Table 7).
    sab: bool = True  # body-part semantics aligned branch, S of SAB
    interaction: bool = True  # I: ReID loss on f_V = f_G + f_P instead of on f_P
    mcl: bool = True  # M: distil f_P into f_G
    sab_distill: Literal["mcl", "cl"] = "mcl"  # Table 7: multi-part contrastive or consistency loss
    feb: bool = True  # foreground-enhanced branch, S of FEB
    consistency: bool = True  # C: L_CL between f_G and sg(f_E)
    feb_similarity: Literal["cosine", "dot"] = "cosine"  # Eq. 2
    feb_temperature: float = Field(0.1, gt=0)  # a_ij = softmax(sim / T)
    mcl_similarity: Literal["cosine", "dot"] = "cosine"  # Eq. 5
    mcl_temperature: float = Field(0.1, gt=0)
    # Loss weights (Eq. 7).
    lambda_cl: float = Field(0.25, ge=0)
    # ||.||^2 of Eq. 4 (and Table 7's SAB consistency): "mean" over channels (default, on the ReID losses'
    # scale; see docs/models.md) or "sum", the paper's squared norm literally (C times larger).
    cl_reduction: Literal["mean", "sum"] = "mean"
    lambda_mcl: float = Field(0.25, ge=0)


CONFIG = PGFLKDConfig
