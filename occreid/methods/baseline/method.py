"""The Baseline of both papers, trained with L_ReID^G = label-smoothed ID cross-entropy + batch-hard triplet
loss; needs no pose. With a CNN it is PGFL-KD's Table 6 row 1 (BoT-style: ResNet -> F -> GAP -> f_G ->
BNNeck); with a ViT backbone it is TransReID's baseline, the one OGFR must beat (class token -> BNNeck,
optional camera embedding)."""

from __future__ import annotations

import torch
from torch import Tensor

from occreid.config import Config
from occreid.errors import OccreidError
from occreid.modeling.base import BatchNeeds, ReidMethod
from occreid.modeling.deploy import pool_feature_map


class Baseline(ReidMethod):
    def __init__(self, cfg: Config, num_classes: int) -> None:
        if cfg.model.test_feature != "f_G":
            raise OccreidError(
                f"model.test_feature={cfg.model.test_feature} needs PGFL-KD's pose branches; "
                "the baseline only has f_G (set model.test_feature=f_G)"
            )
        super().__init__(cfg, num_classes)

    def batch_needs(self) -> BatchNeeds:
        paired = self.cfg.baseline.views != "holistic"
        return BatchNeeds(paired_views=paired, test_keypoints=super().batch_needs().test_keypoints)

    def training_views(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor | None]:
        """(images, pids, camids or None) of the views baseline.views trains on: x, x~, or both (2B)."""
        cams = self.training_cameras(batch)
        views = self.cfg.baseline.views
        if views == "holistic":
            return batch["images"], batch["pids"], cams
        if views == "occluded":
            return batch["occluded"], batch["pids"], cams
        images = torch.cat([batch["images"], batch["occluded"]])
        return images, batch["pids"].repeat(2), None if cams is None else cams.repeat(2)

    def training_step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        images, pids, cams = self.training_views(batch)
        f_g = pool_feature_map(self.feature_map(images, cams))  # (B, C)
        terms, _, logits = self.reid_loss("G", f_g, pids)
        terms["acc"] = self.accuracy(logits, pids)
        return terms


def build(cfg: Config, num_classes: int) -> Baseline:
    return Baseline(cfg, num_classes)
