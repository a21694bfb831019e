"""What every ReID method shares: a backbone giving F, the global feature f_G = pool(F) with its BNNeck, the
ReID loss (ID + triplet) on a supervised feature, deployment and the method interface the trainer uses:

    method = build_model(cfg, num_classes)
    needs = method.batch_needs()                                   # what the loader must put in a batch
    extra = method.extra_optimizers()                              # {name: optimiser} of its own
                                                                     (e.g. an agent)
    groups = method.parameter_groups(weight_decay, exclude=ids)    # the main optimiser's: all but extra's
    method.set_epoch(epoch)                                        # 0-based, before each epoch (warm-ups)
    terms = method.training_step({"images": x, "pids": y, ...})  # named, already weighted scalar terms
    loss = sum(v for k, v in terms.items() if k not in method.metric_names)
    feats = method.eval()(images)                                  # (B, D) test feature
    deployed = method.deploy()                                     # plain images -> (B, D) module

F is a CNN's feature map (B, C, h, w), pooled by global average pooling, or a ViT's tokens (B, 1 + N, D),
pooled by taking the class token (occreid.modeling.deploy.pool_feature_map).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from occreid.config import Config
from occreid.modeling.backbone import build_backbone
from occreid.modeling.bnneck import BNNeck
from occreid.modeling.deploy import DeployedReid, make_deployed, pool_feature_map
from occreid.modeling.losses import batch_hard_triplet_loss, cross_entropy_label_smoothing
from occreid.modeling.vit import VIT_ARCHS, ViTBackbone


@dataclass(frozen=True)
class BatchNeeds:
    """What a method's batches carry beyond images, pids and camids (see occreid.data.loaders)."""

    keypoints: bool = False  # training batches: "keypoints" (B, 17, 3)
    paired_views: bool = (
        False  # training batches: "occluded", "occ_type", "occ_mask" (occreid.data.occlusion)
    )
    test_keypoints: bool = False  # query and gallery keypoints at evaluation


def build_reid_backbone(cfg: Config) -> nn.Module:
    """The backbone cfg.model.backbone names: a CNN (occreid.modeling.backbone) or a ViT
    (occreid.modeling.vit)."""
    m = cfg.model
    if m.backbone in VIT_ARCHS:
        return ViTBackbone(
            m.backbone,
            cfg.data.image_size,
            stride=m.vit_stride,
            depth=m.vit_depth,
            drop_path=m.drop_path,
            num_cameras=m.num_cameras,
            camera_coef=m.camera_coef,
            pretrained=m.pretrained,
        )
    return build_backbone(m.backbone, m.pretrained, m.last_stride)


class ReidMethod(nn.Module):
    """Base class: backbone + f_G BNNeck. Subclasses implement `training_step` and may extend `extract`,
    `batch_needs`, `extra_optimizers` and `set_epoch`."""

    metric_names: tuple[str, ...] = ("acc",)  # returned terms that are logged but not added to the loss
    # True where some steps leave trainable parameters without a gradient: DDP must then look for them
    # every step (a cost), else it waits for their gradients forever.
    find_unused_parameters: bool = False
    deployed_neck = "G"  # the BNNeck of the feature used at test time and deployed

    def __init__(self, cfg: Config, num_classes: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = build_reid_backbone(cfg)
        self.channels = self.backbone.out_channels
        self.necks = nn.ModuleDict({"G": BNNeck(self.channels, num_classes)})
        self.epoch = 0

    # ---- what the training loop reads

    def batch_needs(self) -> BatchNeeds:
        return BatchNeeds(test_keypoints=self.cfg.model.test_feature != "f_G")

    def extra_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Optimisers of the method's own (e.g. OGFR's agent); their parameters stay out of the main
        optimiser. Called once by the loop, which zeroes, steps and checkpoints them with the main one."""
        return {}

    def parameter_groups(self, weight_decay: float, exclude: set[int] = frozenset()) -> list[dict]:
        """The main optimiser's groups: every trainable parameter whose id is not in `exclude` (those of the
        extra optimisers), without weight decay on biases and norm weights."""
        decay, no_decay = [], []
        for p in self.parameters():
            if p.requires_grad and id(p) not in exclude:
                (no_decay if p.ndim <= 1 else decay).append(p)
        return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]

    def set_epoch(self, epoch: int) -> None:
        """The 0-based epoch about to run (the loop calls it before each epoch, also after a resume)."""
        self.epoch = epoch

    # ---- features and losses

    def feature_map(self, images: Tensor, camids: Tensor | None = None) -> Tensor:
        """images (B,3,H,W) -> F: (B, C, h, w) of a CNN (e.g. for response maps, paper Fig. 4) or ViT tokens
        (B, 1 + N, D). `camids` feed a ViT's camera embedding (training only; see occreid.modeling.vit)."""
        if camids is None:
            return self.backbone.forward_features(images)
        return self.backbone.forward_features(images, camids)

    def training_cameras(self, batch: dict[str, Tensor]) -> Tensor | None:
        """The batch's camids where the backbone has a camera embedding, else None."""
        return batch["camids"] if getattr(self.backbone, "camera_embed", None) is not None else None

    def reid_loss(self, name: str, feat: Tensor, pids: Tensor) -> tuple[dict[str, Tensor], Tensor, Tensor]:
        """L_ReID on one feature: triplet on `feat` (before BN), label-smoothed CE on the BNNeck logits.
        Returns ({"id_<name>": ..., "tri_<name>": ...}, the BN feature, logits)."""
        feat_bn, logits = self.necks[name](feat)
        loss = self.cfg.loss
        terms = {
            f"id_{name}": cross_entropy_label_smoothing(logits, pids, loss.label_smoothing),
            f"tri_{name}": batch_hard_triplet_loss(feat, pids, loss.triplet_margin),
        }
        return terms, feat_bn, logits

    @staticmethod
    def accuracy(logits: Tensor, pids: Tensor) -> Tensor:
        return (logits.detach().argmax(dim=1) == pids).float().mean()

    def training_step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        raise NotImplementedError

    def extract(self, images: Tensor, keypoints: Tensor | None = None, feature: str | None = None) -> Tensor:
        """The test feature `feature` (default cfg.model.test_feature) of each image: (B, D)."""
        feature = feature or self.cfg.model.test_feature
        if feature != "f_G":
            raise ValueError(f"{type(self).__name__} has no test feature {feature}")
        f_g = pool_feature_map(self.feature_map(images))  # (B, C)
        return self.necks[self.deployed_neck].test_feature(f_g, self.cfg.model.neck_feat)

    def forward(self, images: Tensor, keypoints: Tensor | None = None) -> Tensor:
        return self.extract(images, keypoints)

    def deploy(self) -> DeployedReid:
        """A plain `images -> (B, C)` f_G module with copies of the trained weights (see deploy.py)."""
        return make_deployed(self.backbone, self.necks[self.deployed_neck].bn, self.cfg.model.neck_feat)
