"""The baseline's config section, `baseline.*`: which training views it learns from (the fair controls of a
paired-view method such as OGFR; docs/results.md)."""

from __future__ import annotations

from typing import Literal

from occreid.config_fields import Section


class BaselineConfig(Section):
    # "holistic": the training images as the dataset gives them (BoT; the papers' baseline). "occluded": only
    # the occluded views x~ of occreid.data.occlusion (cfg.occlusion; one per image, same batch size).
    # "both": x and x~ of each image as one batch of twice the size (what OGFR's teacher and student see).
    views: Literal["holistic", "occluded", "both"] = "holistic"


CONFIG = BaselineConfig
