"""The Occlusion-Aware Vision Transformer (docs/ogfr.md section 2): a ViT (occreid.modeling.vit) with the
occlusion pattern embeddings inserted after block `pattern_block`:

    x = embed(images) -> blocks [0, l_p) -> + coef * w @ E -> blocks [l_p, depth) -> norm -> (B, 1 + N, D)

`forward_features(images)` is the deployed student's feature map (images only; the predicted mixture).
The teacher runs the same steps in two halves around its feature-erasing module (`tokens_until`, `finish`).
"""

from __future__ import annotations

from torch import Tensor, nn

from occreid.methods.ogfr.patterns import OcclusionPatterns, PatternPrediction
from occreid.modeling.vit import ViTBackbone


class OcclusionAwareViT(nn.Module):
    def __init__(self, vit: ViTBackbone, patterns: OcclusionPatterns | None, pattern_block: int) -> None:
        super().__init__()
        self.vit = vit
        self.patterns = patterns  # None: a plain ViT (ablations without pattern embeddings)
        self.pattern_block = pattern_block
        self.out_channels = vit.out_channels

    @property
    def camera_embed(self) -> nn.Parameter | None:
        """The ViT's camera embedding (SIE), None without one."""
        return self.vit.camera_embed

    def tokens_until(
        self, images: Tensor, end: int, camids: Tensor | None = None, pattern: Tensor | None = None
    ) -> tuple[Tensor, PatternPrediction | None]:
        """images (B,3,H,W) -> tokens (B, 1 + N, D) after blocks [0, end) with the pattern embedding added
        after block pattern_block (end >= pattern_block), and the pattern prediction (None without
        patterns)."""
        x = self.vit.embed(images, camids)  # (B, 1 + N, D)
        if self.patterns is None:
            return self.vit.run_blocks(x, 0, end), None
        x = self.vit.run_blocks(x, 0, self.pattern_block)
        x, prediction = self.patterns(x, pattern)
        return self.vit.run_blocks(x, self.pattern_block, end), prediction

    def finish(self, x: Tensor, start: int) -> Tensor:
        """Blocks [start, depth) and the final norm: (B, 1 + N, D) -> (B, 1 + N, D)."""
        return self.vit.norm(self.vit.run_blocks(x, start, None))

    def forward_features(self, images: Tensor, camids: Tensor | None = None) -> Tensor:
        """images (B,3,H,W) -> tokens (B, 1 + N, D), with the predicted pattern mixture (no side input)."""
        depth = self.vit.depth
        return self.finish(self.tokens_until(images, depth, camids)[0], depth)

    def forward(self, images: Tensor) -> Tensor:
        return self.forward_features(images)
