"""OGFR's ablations (spec section 7) as `cfg.ogfr` field values; configs/ablations/ogfr_*.yaml train them on
Occluded-Duke. Every preset states all ablation switches, so none depends on the defaults."""

from __future__ import annotations

# Pattern index of each occlusion type, in the order none, top, bottom, left, right, block, person.
ONE_PATTERN = (0, 0, 0, 0, 0, 0, 0)  # a single learnt embedding: no type information
TWO_PATTERNS = (0, 1, 1, 1, 1, 1, 1)  # holistic vs occluded
FOUR_PATTERNS = (0, 1, 1, 1, 1, 2, 3)  # holistic, a side, a block, another person

# Full OGFR as configs/ogfr.yaml trains it on ViT-B: the defaults, and the teacher sharing the embeddings and
# the 6 blocks before the agent.
_SWITCHES = dict(
    distill=True,
    patterns=True,
    fepm="agent",
    erase_ratio=0.2,
    pattern_groups=None,
    share="first",
    shared_blocks=6,
)

OGFR_ABLATIONS: dict[str, dict] = {
    # The rows that add one component at a time.
    "ogfr_row1_two_view": dict(_SWITCHES, distill=False, patterns=False, fepm="off"),
    "ogfr_row2_distill": dict(_SWITCHES, patterns=False, fepm="off"),
    "ogfr_row3_patterns": dict(_SWITCHES, fepm="off"),
    "ogfr_row4_fepm_random": dict(_SWITCHES, fepm="random"),
    "ogfr_row5_fepm_agent": dict(_SWITCHES),
    # The erase ratio rho (row 5 has 0.2).
    "ogfr_rho_0.1": dict(_SWITCHES, erase_ratio=0.1),
    "ogfr_rho_0.3": dict(_SWITCHES, erase_ratio=0.3),
    # The number of pattern types P (row 5: one per occlusion type, 7).
    "ogfr_patterns_1": dict(_SWITCHES, pattern_groups=ONE_PATTERN),
    "ogfr_patterns_2": dict(_SWITCHES, pattern_groups=TWO_PATTERNS),
    "ogfr_patterns_4": dict(_SWITCHES, pattern_groups=FOUR_PATTERNS),
    # A separate teacher, and one sharing all but the last block (row 5 shares the first 6 of 12 blocks).
    "ogfr_teacher_separate": dict(_SWITCHES, share="none"),
    "ogfr_teacher_all_but_last": dict(_SWITCHES, share="all_but_last"),
}
