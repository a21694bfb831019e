"""PGFL-KD, one module per component: part pooling (Eq. 1), FEB (Eq. 2-4), SAB, the method and its ablations.
The losses (L_CL Eq. 4, L_MCL Eq. 5) live in occreid.modeling.losses."""

from occreid.modeling.pgfl_kd.feb import ForegroundEnhancedBranch
from occreid.modeling.pgfl_kd.method import PGFLKD
from occreid.modeling.pgfl_kd.part_pooling import part_pooling
from occreid.modeling.pgfl_kd.presets import ABLATION_PRESETS
from occreid.modeling.pgfl_kd.sab import SemanticsAlignedBranch

__all__ = [
    "ABLATION_PRESETS",
    "PGFLKD",
    "ForegroundEnhancedBranch",
    "SemanticsAlignedBranch",
    "part_pooling",
]
