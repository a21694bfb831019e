"""What the page shows beside a query: for a CNN, its response map, the channel mean of the feature map F over
the image (the paper's Figures 1 and 4, as the demo's report draws them); for an OGFR model, the occlusion
pattern its pattern head predicts for the image (docs/ogfr.md section 2: softmax weights over the patterns,
each named by the occlusion types it stands for). A plain ViT gets neither (its layer-normalised tokens'
channel mean says nothing)."""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
import torch
from torch import nn

from occreid.config import Config
from occreid.methods.ogfr.oavit import OcclusionAwareViT
from occreid.modeling.vit import VIT_ARCHS


def pattern_names(cfg: Config) -> list[str]:
    """The name of each pattern: the occlusion types it was trained on, joined by '/'."""
    types = list(cfg.occlusion.types)
    groups = cfg.ogfr.pattern_groups if cfg.ogfr.pattern_groups is not None else range(len(types))
    names: dict[int, list[str]] = {}
    for kind, group in zip(types, groups):
        names.setdefault(int(group), []).append(kind)
    return ["/".join(names.get(p, [f"pattern {p}"])) for p in range(max(names) + 1)]


class Explainer:
    """Response maps or occlusion patterns of one deployed model (images -> (B, D)), on its config's
    preprocessing."""

    def __init__(self, model: nn.Module, cfg: Config) -> None:
        self.model = model.eval()
        self.cfg = cfg
        backbone = getattr(model, "backbone", None)
        if isinstance(backbone, OcclusionAwareViT) and backbone.patterns is not None:
            self.kind: str | None = "ogfr"
            self.names = pattern_names(cfg)
        else:
            self.kind = None if cfg.model.backbone in VIT_ARCHS else "cnn"
        self.device = next(model.parameters()).device

    def _tensor(self, image: Any) -> torch.Tensor:
        """A PIL image -> (1, 3, H, W), resized and normalised as the model was trained."""
        from PIL import Image

        h, w = self.cfg.data.image_size
        array = np.asarray(image.convert("RGB").resize((w, h), Image.BILINEAR), dtype=np.float32) / 255.0
        tensor = torch.from_numpy(array).permute(2, 0, 1)[None]
        mean = torch.tensor(self.cfg.data.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.cfg.data.std).view(1, 3, 1, 1)
        return ((tensor - mean) / std).to(self.device)

    @torch.inference_mode()
    def response_map(self, image: Any) -> bytes:
        """PNG: the image with its response map (jet colours, half opaque) over it."""
        import matplotlib
        from PIL import Image

        h, w = self.cfg.data.image_size
        fmap = self.model.forward_features(self._tensor(image)).float().mean(1, keepdim=True)  # (1,1,h',w')
        fmap = nn.functional.interpolate(fmap, size=(h, w), mode="bilinear", align_corners=False)[0, 0].cpu()
        fmap = (fmap - fmap.min()) / (fmap.max() - fmap.min() + 1e-8)
        heat = matplotlib.colormaps["jet"](fmap.numpy())[..., :3]
        base = np.asarray(image.convert("RGB").resize((w, h), Image.BILINEAR), dtype=np.float32) / 255.0
        blended = (0.5 * base + 0.5 * heat) * 255.0
        buffer = io.BytesIO()
        Image.fromarray(blended.clip(0, 255).astype(np.uint8)).save(buffer, "PNG")
        return buffer.getvalue()

    @torch.inference_mode()
    def pattern(self, image: Any) -> list[dict[str, Any]]:
        """The predicted pattern weights w (softmax of the pattern head), largest first."""
        backbone: OcclusionAwareViT = self.model.backbone
        _, prediction = backbone.tokens_until(self._tensor(image), backbone.pattern_block)
        weights = prediction.weights[0].float().cpu().tolist()
        ranked = sorted(zip(self.names, weights), key=lambda pair: -pair[1])
        return [{"pattern": name, "weight": round(weight, 4)} for name, weight in ranked]

    def explain(self, image: Any) -> dict[str, Any]:
        """{"kind": "cnn", "map": PNG data URL} | {"kind": "ogfr", "pattern": [...]} | {"kind": None}."""
        if self.kind == "cnn":
            encoded = base64.b64encode(self.response_map(image)).decode()
            return {"kind": "cnn", "map": f"data:image/png;base64,{encoded}"}
        if self.kind == "ogfr":
            return {"kind": "ogfr", "pattern": self.pattern(image)}
        return {"kind": None}
