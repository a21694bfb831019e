"""SynthOcc: the built-in synthetic occluded-person ReID benchmark (procedural people, occluders, exact
keypoints).

See docs/synthocc.md. `generate` writes a dataset; `make_contact_sheet` draws a preview.
"""

from occreid.data.synthocc.generate import PRESETS, PROTOCOLS, generate, plan_dataset, render_sample
from occreid.data.synthocc.preview import make_contact_sheet

__all__ = ["PRESETS", "PROTOCOLS", "generate", "make_contact_sheet", "plan_dataset", "render_sample"]
