"""Models and losses: the baseline, PGFL-KD and OGFR, their deployment, complexity and ONNX export.

from occreid.modeling import build_model
method = build_model(cfg, num_classes=702)
"""

from __future__ import annotations

from occreid.config import Config
from occreid.errors import OccreidError
from occreid.modeling.base import ReidMethod
from occreid.modeling.baseline import Baseline
from occreid.modeling.deploy import DeployedReid
from occreid.modeling.ogfr import OGFR, OGFR_ABLATIONS
from occreid.modeling.pgfl_kd import ABLATION_PRESETS, PGFLKD
from occreid.modeling.vit import VIT_ARCHS


def build_model(cfg: Config, num_classes: int) -> ReidMethod:
    """The method named by cfg.model.name ("baseline", "pgfl_kd" or "ogfr") for `num_classes` training identities."""
    if num_classes < 2:
        raise OccreidError(f"the training set has {num_classes} identities; ReID training needs at least 2")
    if cfg.model.name == "baseline":
        return Baseline(cfg, num_classes)
    if cfg.model.name == "pgfl_kd":
        if cfg.model.backbone in VIT_ARCHS:
            raise OccreidError(
                f"model.backbone={cfg.model.backbone}: PGFL-KD pools a CNN's spatial feature map; "
                "choose resnet18/34/50 or mobilenet_v2, or model.name=baseline for a ViT"
            )
        return PGFLKD(cfg, num_classes)
    if cfg.model.name == "ogfr":
        return OGFR(cfg, num_classes)
    raise OccreidError(f"model.name={cfg.model.name!r} is not a method; choose baseline, pgfl_kd or ogfr")


__all__ = [
    "ABLATION_PRESETS",
    "OGFR",
    "OGFR_ABLATIONS",
    "PGFLKD",
    "Baseline",
    "DeployedReid",
    "ReidMethod",
    "build_model",
]
