"""OGFR, one module per component: occlusion pattern embeddings and the occlusion-aware ViT (spec section 2),
the feature erasing and purification module (section 4), reinforced distillation (section 5), the method and
its ablations (section 7)."""

from occreid.modeling.ogfr.fepm import PurificationAgent, TokenEraser
from occreid.modeling.ogfr.method import OGFR
from occreid.modeling.ogfr.oavit import OcclusionAwareViT
from occreid.modeling.ogfr.patterns import OcclusionPatterns
from occreid.modeling.ogfr.presets import OGFR_ABLATIONS

__all__ = [
    "OGFR",
    "OGFR_ABLATIONS",
    "OcclusionAwareViT",
    "OcclusionPatterns",
    "PurificationAgent",
    "TokenEraser",
]
