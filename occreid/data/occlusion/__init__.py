"""Typed occlusion augmentation: paired holistic/occluded views with occlusion types and masks (OGFR spec
section 1). `sources` draws what an occluder looks like, `paste` where it goes and the ViT patch mask."""

from occreid.data.occlusion.paste import OcclusionAugment, OcclusionDraw, patch_mask, sources_for

__all__ = ["OcclusionAugment", "OcclusionDraw", "patch_mask", "sources_for"]
