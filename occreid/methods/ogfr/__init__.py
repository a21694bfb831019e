"""OGFR, one module per component (docs/ogfr.md): occlusion pattern embeddings and the occlusion-aware ViT
(section 2), the teacher and student (section 3), the feature erasing and purification module (section 4),
reinforced distillation (section 5), its config section and its ablation presets (section 7)."""

from occreid.methods import DemoModel

DEMO = (DemoModel("ogfr", "OGFR"),)
