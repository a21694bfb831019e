"""PGFL-KD (Zheng et al., ACM MM 2021): main branch + foreground-enhanced branch (FEB) + body-part semantics
aligned branch (SAB), distilled into the main branch's f_G, which alone is used at test time.

Training (section 3.4, Eq. 10), with every term returned separately and already weighted:

    L = L_ReID^G + L_ReID^E + L_ReID^V + lambda_cl L_CL + lambda_mcl L_MCL

The ablation switches of `cfg.pgfl_kd` (Table 6 / Table 7) turn pieces off; see the presets/ folder.
"""

from __future__ import annotations

from torch import Tensor

from occreid.config import Config
from occreid.errors import OccreidError
from occreid.methods.pgfl_kd.feb import ForegroundEnhancedBranch
from occreid.methods.pgfl_kd.losses import consistency_loss, multi_part_contrastive_loss, part_positive_mask
from occreid.methods.pgfl_kd.part_pooling import part_pooling
from occreid.methods.pgfl_kd.sab import SemanticsAlignedBranch
from occreid.modeling.base import BatchNeeds, ReidMethod
from occreid.modeling.bnneck import BNNeck
from occreid.modeling.vit import VIT_ARCHS
from occreid.pose.schema import NUM_KEYPOINTS, NUM_PARTS, PART_FLIP


class PGFLKD(ReidMethod):
    """Which switches are on decides the supervised features (each with its own BNNeck) and loss terms:

    - always: f_G = GAP(F) -> "id_G", "tri_G"
    - pgfl_kd.sab: f_P = SAB(f_l); with pgfl_kd.interaction the ReID loss is on f_V = f_G + f_P (Eq. 6) ->
      "id_V", "tri_V", without it on f_P alone -> "id_P", "tri_P" (Table 6 row 2)
    - pgfl_kd.sab and pgfl_kd.mcl: distil f_P into f_G: "mcl" = lambda_mcl L_MCL (Eq. 5), or for
      pgfl_kd.sab_distill="cl" (Table 7) "cl_sab" = lambda_mcl ||f_G - sg(f_P)||^2
    - pgfl_kd.feb: f_E = f_F + f_G -> "id_E", "tri_E"; with pgfl_kd.consistency "cl" = lambda_cl L_CL (Eq. 4)

    Switches under a branch that is off (interaction/mcl/sab_distill without sab, consistency without feb)
    have no effect.
    """

    def __init__(self, cfg: Config, num_classes: int) -> None:
        super().__init__(cfg, num_classes)
        m, backbone = cfg.pgfl_kd, cfg.model.backbone
        if m.num_parts != NUM_PARTS:
            raise OccreidError(
                f"pgfl_kd.num_parts={m.num_parts}: the pose heatmaps have {NUM_PARTS} part groups "
                f"(occreid.pose.schema.PART_GROUPS); set pgfl_kd.num_parts={NUM_PARTS}"
            )
        if self.channels % m.num_parts:
            raise OccreidError(
                f"pgfl_kd.num_parts={m.num_parts} must divide the {backbone} channel count {self.channels}"
            )
        self.use_sab, self.use_feb = m.sab, m.feb
        self.sab_head = "V" if m.interaction else "P"  # which SAB feature carries the ReID loss
        if m.sab:
            self.sab = SemanticsAlignedBranch(self.channels, m.num_parts)
            self.necks[self.sab_head] = BNNeck(self.channels, num_classes)
        if m.feb:
            self.feb = ForegroundEnhancedBranch(m.feb_similarity, m.feb_temperature)
            self.necks["E"] = BNNeck(self.channels, num_classes)
        self.register_buffer("positive", part_positive_mask(PART_FLIP), persistent=False)  # (K, K)
        needs = {"f_P": m.sab, "f_V": m.sab, "f_F": m.feb, "f_E": m.feb, "f_G": True}
        test_feature = cfg.model.test_feature
        if not needs[test_feature]:
            branch = "pgfl_kd.sab" if test_feature in ("f_P", "f_V") else "pgfl_kd.feb"
            raise OccreidError(f"model.test_feature={test_feature} needs {branch}=true")

    def batch_needs(self) -> BatchNeeds:
        """The pose-guided branches need keypoints in training; at test only the pose-at-test features do."""
        return BatchNeeds(
            keypoints=self.use_sab or self.use_feb, test_keypoints=self.cfg.model.test_feature != "f_G"
        )

    # ---- pose ---------------------------------------------------------------------------------------------
    def part_heatmaps(
        self, keypoints: Tensor | None, image_size: tuple[int, int], feature_size: tuple[int, int]
    ) -> tuple[Tensor, Tensor]:
        """keypoints (B, 17, 3) in input pixels -> heatmaps H (B, K, h, w) and visible (B, K) bool."""
        if keypoints is None:
            raise OccreidError(
                "PGFL-KD's pose branches (pgfl_kd.sab / pgfl_kd.feb) need keypoints for every image: write a "
                "keypoint file with the pose command and point data.keypoints at it (default "
                "<data.root>/keypoints.npz), or use model.name=baseline / model.test_feature=f_G"
            )
        if keypoints.ndim != 3 or tuple(keypoints.shape[1:]) != (NUM_KEYPOINTS, 3):
            raise OccreidError(
                f"keypoints must have shape (B, {NUM_KEYPOINTS}, 3), got {tuple(keypoints.shape)}"
            )
        from occreid.pose.heatmaps import part_visibility, render_part_heatmaps

        heatmaps = render_part_heatmaps(keypoints, tuple(image_size), tuple(feature_size), self.cfg.pose)
        # A group is visible when one of its keypoints reaches pose.conf_threshold; invisible groups are left
        # out of f_L (FEB) and of the sum over parts i in L_MCL (see docs/models.md).
        return heatmaps, part_visibility(keypoints, self.cfg.pose)

    # ---- training -----------------------------------------------------------------------------------------
    def branches(
        self, images: Tensor, keypoints: Tensor | None, only: str | None = None
    ) -> dict[str, Tensor]:
        """Features of the enabled branches: F, f_G, and (with pose) visible, f_l, f_P, f_V, f_F, f_E.
        `only` (a test feature name) skips the branch that feature does not need."""
        run_feb = self.use_feb and only in (None, "f_F", "f_E")
        run_sab = self.use_sab and only in (None, "f_P", "f_V")
        fmap = self.feature_map(images)  # F: (B, C, h, w)
        out = {"F": fmap, "f_G": fmap.mean(dim=(2, 3))}  # f_G: (B, C)
        if not (run_sab or run_feb):
            return out
        heatmaps, visible = self.part_heatmaps(keypoints, images.shape[-2:], fmap.shape[-2:])  # (B,K,h,w)
        f_l = part_pooling(fmap, heatmaps)  # (B, K, C), Eq. 1
        out.update(visible=visible, f_l=f_l)
        if run_feb:
            out["f_F"] = self.feb(fmap, f_l, visible)  # (B, C), Eq. 2-3
            out["f_E"] = out["f_F"] + out["f_G"]
        if run_sab:
            out["f_P"] = self.sab(f_l)  # (B, C)
            out["f_V"] = out["f_G"] + out["f_P"]  # Eq. 6
        return out

    def training_step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        m = self.cfg.pgfl_kd
        pids = batch["pids"]
        f = self.branches(batch["images"], batch.get("keypoints"))
        terms, _, logits = self.reid_loss("G", f["f_G"], pids)  # L_ReID^G
        if self.use_sab:
            terms |= self.reid_loss(self.sab_head, f[f"f_{self.sab_head}"], pids)[0]  # L_ReID^V (or ^P)
            if m.mcl and m.sab_distill == "mcl":
                b, k = f["f_G"].shape[0], m.num_parts
                terms["mcl"] = m.lambda_mcl * multi_part_contrastive_loss(
                    f["f_G"].view(b, k, -1),
                    f["f_P"].view(b, k, -1),
                    self.positive,
                    f["visible"],
                    m.mcl_similarity,
                    m.mcl_temperature,
                )  # Eq. 5, f_P detached inside
            elif m.mcl:
                terms["cl_sab"] = m.lambda_mcl * consistency_loss(
                    f["f_G"], f["f_P"], m.cl_reduction
                )  # Table 7
        if self.use_feb:
            terms |= self.reid_loss("E", f["f_E"], pids)[0]  # L_ReID^E
            if m.consistency:
                terms["cl"] = m.lambda_cl * consistency_loss(f["f_G"], f["f_E"], m.cl_reduction)  # Eq. 4
        terms["acc"] = self.accuracy(logits, pids)
        return terms

    # ---- test ---------------------------------------------------------------------------------------------
    def extract(self, images: Tensor, keypoints: Tensor | None = None, feature: str | None = None) -> Tensor:
        """Test feature (Table 8): f_G (no pose needed) or f_P, f_V, f_F, f_E (need keypoints). A feature with
        a BNNeck (f_G; f_E; f_V with interaction or f_P without) goes through it per model.neck_feat; the
        never-supervised ones (f_F; f_P with interaction; f_V without) are returned raw."""
        feature = feature or self.cfg.model.test_feature
        if feature == "f_G":
            return super().extract(images, None, "f_G")
        if keypoints is None:
            raise OccreidError(
                f"model.test_feature={feature} needs keypoints for the query and gallery images; "
                "use model.test_feature=f_G to match without pose"
            )
        return self.test_feature(self.branches(images, keypoints, only=feature), feature)

    def test_feature(self, branches: dict[str, Tensor], feature: str) -> Tensor:
        """`feature` (f_P, f_V, f_F or f_E) from the output of `branches`, through its BNNeck where it has
        one."""
        if feature not in branches:
            raise OccreidError(
                f"model.test_feature={feature} is not produced with the current model switches"
            )
        neck = self.necks[feature[-1]] if feature[-1] in self.necks else None  # ModuleDict has no .get
        return (
            neck.test_feature(branches[feature], self.cfg.model.neck_feat)
            if neck is not None
            else branches[feature]
        )


def build(cfg: Config, num_classes: int) -> PGFLKD:
    if cfg.model.backbone in VIT_ARCHS:
        raise OccreidError(
            f"model.backbone={cfg.model.backbone}: PGFL-KD pools a CNN's spatial feature map; "
            "choose resnet18/34/50 or mobilenet_v2, or model.name=baseline for a ViT"
        )
    return PGFLKD(cfg, num_classes)
