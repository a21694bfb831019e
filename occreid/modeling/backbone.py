"""ResNet backbones with a configurable last stride, exposing the feature map F (PGFL-KD section 3.1).

    backbone = build_backbone("resnet50", pretrained=False, last_stride=1)
    F = backbone.forward_features(torch.randn(2, 3, 384, 128))  # (2, 2048, 24, 8)

Weights: `pretrained=True` loads torchvision's ImageNet weights (`ResNet50_Weights.IMAGENET1K_V1` etc.) through
torchvision's own cache (`$TORCH_HOME/hub/checkpoints/`), so it works offline once the file is there; a str is a
path to a state dict file (torchvision key names; `fc.*` keys are ignored); False is random initialisation.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor, nn

from occreid.errors import OccreidError

# name -> (torchvision constructor name, weights enum name, output channels)
RESNETS: dict[str, tuple[str, str, int]] = {
    "resnet18": ("resnet18", "ResNet18_Weights", 512),
    "resnet34": ("resnet34", "ResNet34_Weights", 512),
    "resnet50": ("resnet50", "ResNet50_Weights", 2048),
}


class ResNetBackbone(nn.Module):
    """A torchvision ResNet without avgpool/fc. `forward_features(x (B,3,H,W)) -> F (B, C, H/s, W/s)`.

    With last_stride=1 the output stride s is 16, so 384 x 128 gives F of 24 x 8 (C = 2048 for ResNet-50,
    512 for ResNet-18/34). Parameter names match torchvision's, so its state dicts load directly.
    """

    def __init__(self, name: str = "resnet50", last_stride: int = 1) -> None:
        super().__init__()
        import torchvision

        if name not in RESNETS:
            raise OccreidError(f"model.backbone: unknown backbone {name!r}; choose one of {', '.join(RESNETS)}")
        if last_stride not in (1, 2):
            raise OccreidError(f"model.last_stride must be 1 or 2, got {last_stride}")
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


def set_last_stride(backbone: ResNetBackbone, stride: int) -> None:
    """Set the stride of layer4's first block: Bottleneck.conv2 (ResNet-50) or BasicBlock.conv1 (ResNet-18/34),
    and its downsample conv. Stride 1 keeps F at 1/16 of the input (BoT's "last stride" trick)."""
    block = backbone.layer4[0]
    conv = block.conv2 if hasattr(block, "conv3") else block.conv1
    conv.stride = (stride, stride)
    block.downsample[0].stride = (stride, stride)


def torchvision_cache_path(name: str) -> Path:
    """Where torchvision keeps the ImageNet weights of `name`: `<torch.hub.get_dir()>/checkpoints/<file>`."""
    import torchvision

    weights = getattr(torchvision.models, RESNETS[name][1]).IMAGENET1K_V1
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)


def _imagenet_state_dict(name: str) -> dict[str, Tensor]:
    import torchvision

    weights = getattr(torchvision.models, RESNETS[name][1]).IMAGENET1K_V1
    cache = torchvision_cache_path(name)
    try:
        return weights.get_state_dict(progress=False)  # reads the cache, downloads only if the file is absent
    except Exception as exc:
        state = "is corrupt or unreadable" if cache.is_file() else "is not in the torch hub cache"
        raise OccreidError(
            f"ImageNet weights for {name} {state} and could not be downloaded ({type(exc).__name__}: {exc}). "
            f"Place {weights.url.rsplit('/', 1)[-1]} at {cache} (or set TORCH_HOME), or set the config field "
            f"model.pretrained to a state-dict path or to false"
        ) from None


def _file_state_dict(path: str) -> dict[str, Tensor]:
    if not Path(path).is_file():
        raise OccreidError(f"model.pretrained: weights file {path} does not exist (give a state-dict path, "
                           "true for torchvision's ImageNet weights, or false)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        from occreid.errors import torch_load_problem

        raise OccreidError(f"model.pretrained: cannot read {path} as a PyTorch state dict: "
                           f"{torch_load_problem(exc)}") from None  # fmt: skip
    for key in ("state_dict", "model"):  # common checkpoint wrappers
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise OccreidError(f"model.pretrained: {path} holds a {type(state).__name__}, not a state dict")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_backbone_weights(backbone: ResNetBackbone, state: dict[str, Tensor], source: str) -> None:
    """Load a torchvision-named state dict, ignoring `fc.*`; missing or unexpected keys are an OccreidError."""
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    own = backbone.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
             for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        parts = []
        for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", wrong)):
            if keys:
                parts.append(f"{len(keys)} {label} ({', '.join(keys[:4])}{', ...' if len(keys) > 4 else ''})")
        raise OccreidError(f"model.pretrained: {source} does not fit a {backbone.name} backbone: "
                           + "; ".join(parts))
    backbone.load_state_dict(state)


def build_backbone(name: str = "resnet50", pretrained: bool | str = True, last_stride: int = 1) -> ResNetBackbone:
    """A ResNet backbone; see the module docstring for what `pretrained` accepts."""
    backbone = ResNetBackbone(name, last_stride)
    if pretrained is True:
        load_backbone_weights(backbone, _imagenet_state_dict(name), f"torchvision {name} ImageNet weights")
    elif isinstance(pretrained, str):
        load_backbone_weights(backbone, _file_state_dict(pretrained), pretrained)
    return backbone
