"""The Baseline of both papers, trained with L_ReID^G = label-smoothed ID cross-entropy + batch-hard triplet
loss; needs no pose. With a CNN it is PGFL-KD's Table 6 row 1 (BoT-style: ResNet -> F -> GAP -> f_G ->
BNNeck); with a ViT backbone it is TransReID's baseline, the one OGFR must beat (class token -> BNNeck,
optional camera embedding)."""

from __future__ import annotations

from torch import Tensor

from occreid.config import Config
from occreid.errors import OccreidError
from occreid.modeling.base import ReidMethod
from occreid.modeling.deploy import pool_feature_map


class Baseline(ReidMethod):
    def __init__(self, cfg: Config, num_classes: int) -> None:
        if cfg.model.test_feature != "f_G":
            raise OccreidError(
                f"model.test_feature={cfg.model.test_feature} needs PGFL-KD's pose branches; "
                "the baseline only has f_G (set model.test_feature=f_G)"
            )
        super().__init__(cfg, num_classes)

    def training_step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        images, pids = batch["images"], batch["pids"]
        f_g = pool_feature_map(self.feature_map(images, self.training_cameras(batch)))  # (B, C)
        terms, _, logits = self.reid_loss("G", f_g, pids)
        terms["acc"] = self.accuracy(logits, pids)
        return terms


def build(cfg: Config, num_classes: int) -> Baseline:
    return Baseline(cfg, num_classes)
