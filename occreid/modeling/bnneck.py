"""BNNeck (Luo et al., "Bag of Tricks and a Strong Baseline for Deep Person Re-identification", BoT).

    feat (B, D) --BatchNorm1d (bias frozen at 0)--> feat_bn (B, D)
                --Linear (no bias)--> logits (B, num_classes)

The triplet loss is applied to `feat` (before BN), the identity cross-entropy to `logits` (after it). At test
time `cfg.model.neck_feat` picks `feat_bn` ("after", BoT's default: BN makes the feature's channels
comparable, which suits the cosine/Euclidean matching of normalised features) or `feat` ("before").
"""

from __future__ import annotations

from torch import Tensor, nn


class BNNeck(nn.Module):
    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(dim)
        self.bn.bias.requires_grad_(False)  # BoT: no shift, so feat_bn stays centred on the hypersphere
        self.classifier = nn.Linear(dim, num_classes, bias=False)
        # BoT init: BN weight 1, bias 0 (kaiming-style "weights_init_kaiming"); classifier N(0, 0.001^2).
        nn.init.constant_(self.bn.weight, 1.0)
        nn.init.constant_(self.bn.bias, 0.0)
        nn.init.normal_(self.classifier.weight, std=0.001)

    def forward(self, feat: Tensor) -> tuple[Tensor, Tensor]:
        """feat (B, D) -> (feat_bn (B, D), logits (B, num_classes))."""
        feat_bn = self.bn(feat)
        return feat_bn, self.classifier(feat_bn)

    def test_feature(self, feat: Tensor, neck_feat: str) -> Tensor:
        """The matching feature: BN(feat) for neck_feat="after", feat itself for "before"."""
        return self.bn(feat) if neck_feat == "after" else feat
