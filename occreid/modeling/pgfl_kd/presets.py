"""The paper's ablations (PGFL-KD Table 6 rows 1-6 and Table 7) as ModelConfig field values.

Every preset states all switches, so it does not depend on the defaults. Occluded-Duke numbers from the paper
(Rank-1 / mAP, f_G at test): see docs/models.md.
"""

from __future__ import annotations

_OFF = dict(sab=False, interaction=False, mcl=False, sab_distill="mcl", feb=False, consistency=False)

ABLATION_PRESETS: dict[str, dict] = {
    # 1 Baseline: MB only, L_ReID^G.                                           R1 52.7 mAP 45.9
    "table6_row1_baseline": dict(_OFF, name="baseline"),
    # 2 MB+SAB: ReID loss on f_P alone.                                        R1 54.0 mAP 46.5
    "table6_row2_sab": dict(_OFF, name="pgfl_kd", sab=True),
    # 3 MB+SAB w/ I: ReID loss on f_V = f_G + f_P.                             R1 56.4 mAP 48.1
    "table6_row3_sab_i": dict(_OFF, name="pgfl_kd", sab=True, interaction=True),
    # 4 MB+SAB w/ IM: + L_MCL.                                                 R1 59.4 mAP 52.0
    "table6_row4_sab_im": dict(_OFF, name="pgfl_kd", sab=True, interaction=True, mcl=True),
    # 5 MB-SAB+FEB: + L_ReID^E.                                                R1 61.2 mAP 52.1
    "table6_row5_sab_im_feb": dict(_OFF, name="pgfl_kd", sab=True, interaction=True, mcl=True, feb=True),
    # 6 MB-SAB+FEB w/ C: + L_CL = full PGFL-KD.                                R1 63.0 mAP 54.1
    "table6_row6_pgfl_kd": dict(
        _OFF, name="pgfl_kd", sab=True, interaction=True, mcl=True, feb=True, consistency=True
    ),
    # Table 7: SAB distilled by ||f_G - sg(f_P)||^2 instead of L_MCL.        R1 59.1 mAP 50.0
    "table7_sab_cl": dict(
        _OFF,
        name="pgfl_kd",
        sab=True,
        interaction=True,
        mcl=True,
        sab_distill="cl",
        feb=True,
        consistency=True,
    ),
}
