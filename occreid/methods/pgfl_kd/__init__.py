"""PGFL-KD (ACM MM 2021), one module per component: part pooling (Eq. 1), FEB (Eq. 2-4), SAB, its losses
(L_CL Eq. 4, L_MCL Eq. 5), the method (Eq. 6-7), its config section and its ablation presets (Tables 6-7)."""

from occreid.methods import DemoModel

POSE_FEATURES = ("f_P", "f_V", "f_F", "f_E")  # the test features that need keypoints (Table 8)
DEMO = (DemoModel("pgfl_kd", "PGFL-KD", pose_features=POSE_FEATURES),)
