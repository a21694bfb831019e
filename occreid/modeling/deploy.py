"""The deployed (test-time) model: backbone -> pool -> the f_G BNNeck's BN (per `neck_feat`) -> (B, D).

Pose branches, classifiers and the pose estimator are gone: every method deploys to exactly this module, so
PGFL-KD costs the baseline's parameters and FLOPs at test time (paper Table 8), and OGFR's student the ViT
baseline's plus its pattern head and embeddings.
"""

from __future__ import annotations

import copy

from torch import Tensor, nn


def pool_feature_map(feature_map: Tensor) -> Tensor:
    """F -> f_G (B, C): global average pooling of a CNN map (B, C, h, w); the class token of ViT tokens
    (B, 1 + N, D)."""
    return feature_map.mean(dim=(2, 3)) if feature_map.ndim == 4 else feature_map[:, 0]


class DeployedReid(nn.Module):
    """`images (B,3,H,W) -> feature (B, C)`; timm-like `forward_features` (F) and
    `forward_head` (pool + BN)."""

    def __init__(self, backbone: nn.Module, bn: nn.BatchNorm1d | None) -> None:
        super().__init__()
        self.backbone = backbone
        self.bn = bn  # None when neck_feat == "before"

    def forward_features(self, images: Tensor) -> Tensor:
        return self.backbone.forward_features(images)  # F: (B, C, h, w)

    def forward_head(self, feature_map: Tensor) -> Tensor:
        f_g = pool_feature_map(feature_map)  # (B, C): GAP g(F), or a ViT's class token
        return self.bn(f_g) if self.bn is not None else f_g

    def forward(self, images: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(images))


def make_deployed(backbone: nn.Module, bn: nn.BatchNorm1d, neck_feat: str) -> DeployedReid:
    """Copies of the trained backbone and BN (the training model is left untouched), in eval mode."""
    deployed = DeployedReid(copy.deepcopy(backbone), copy.deepcopy(bn) if neck_feat == "after" else None)
    return deployed.eval()
