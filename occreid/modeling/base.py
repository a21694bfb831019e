"""What every ReID method shares: a backbone giving F, the global feature f_G = GAP(F) with its BNNeck, the
ReID loss (ID + triplet) on a supervised feature, deployment and the method interface the trainer uses:

    method = build_model(cfg, num_classes)
    terms = method.training_step({"images": x, "pids": y, ...})  # named, already weighted scalar terms
    loss = sum(v for k, v in terms.items() if k not in method.metric_names)
    feats = method.eval()(images)                                  # (B, D) test feature
    deployed = method.deploy()                                     # plain images -> (B, D) module
"""

from __future__ import annotations

from torch import Tensor, nn

from occreid.config import Config
from occreid.modeling.backbone import build_backbone
from occreid.modeling.bnneck import BNNeck
from occreid.modeling.deploy import DeployedReid, make_deployed
from occreid.modeling.losses import batch_hard_triplet_loss, cross_entropy_label_smoothing


class ReidMethod(nn.Module):
    """Base class: backbone + f_G BNNeck. Subclasses implement `training_step` and may extend `extract`."""

    metric_names: tuple[str, ...] = ("acc",)  # returned terms that are logged but not added to the loss

    def __init__(self, cfg: Config, num_classes: int) -> None:
        super().__init__()
        self.cfg = cfg
        m = cfg.model
        self.backbone = build_backbone(m.backbone, m.pretrained, m.last_stride)
        self.channels = self.backbone.out_channels
        self.necks = nn.ModuleDict({"G": BNNeck(self.channels, num_classes)})

    def feature_map(self, images: Tensor) -> Tensor:
        """images (B,3,H,W) -> F (B, C, h, w), e.g. for response-map visualisation (paper Fig. 4)."""
        return self.backbone.forward_features(images)

    def reid_loss(self, name: str, feat: Tensor, pids: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """L_ReID on one feature: triplet on `feat` (before BN), label-smoothed CE on the BNNeck logits.
        Returns ({"id_<name>": ..., "tri_<name>": ...}, logits)."""
        _, logits = self.necks[name](feat)
        loss = self.cfg.loss
        terms = {
            f"id_{name}": cross_entropy_label_smoothing(logits, pids, loss.label_smoothing),
            f"tri_{name}": batch_hard_triplet_loss(feat, pids, loss.triplet_margin),
        }
        return terms, logits

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
        f_g = self.feature_map(images).mean(dim=(2, 3))  # (B, C)
        return self.necks["G"].test_feature(f_g, self.cfg.model.neck_feat)

    def forward(self, images: Tensor, keypoints: Tensor | None = None) -> Tensor:
        return self.extract(images, keypoints)

    def deploy(self) -> DeployedReid:
        """A plain `images -> (B, C)` f_G module with copies of the trained weights (see deploy.py)."""
        return make_deployed(self.backbone, self.necks["G"].bn, self.cfg.model.neck_feat)
