"""Vision Transformer backbones for ReID on timm's `VisionTransformer` (docs/ogfr.md section 2; TransReID's
recipe).

    backbone = build_vit("vit_base_patch16", image_size=(256, 128), stride=12, pretrained="jx_vit_base.pth")
    tokens = backbone.forward_features(images)         # (B, 1 + N, D): class token, then N patch tokens
    f_g = backbone.pool(tokens)                        # (B, D): the class token

What differs from an ImageNet ViT, each a small insertion into timm's token pipeline (patch embed -> class
token + position embedding -> blocks -> norm):
- **Overlapping patches** (TransReID): the patch embedding's conv keeps its 16 x 16 kernel but moves by
  `stride` (12), so 256 x 128 gives a 21 x 10 grid instead of 16 x 8.
- **Position embedding resized** from the checkpoint's grid (14 x 14 at 224) to the ReID grid, by timm's
  `checkpoint_filter_fn` (bicubic `resample_abs_pos_embed`).
- **Camera embedding** (TransReID's SIE, optional): one learnable vector per camera, times a coefficient,
  added to every token in training. Evaluation and the deployed model see images only, so they add the mean
  camera vector: the same model at test with or without camera labels.
- **Hybrid** `vit_hybrid_mnv2` for the CPU: the patch embedding is the ImageNet-pretrained MobileNetV2 stem
  (its first 14 stages, output stride 16, as the ViT paper's hybrids use a ResNet stem) and a 1 x 1 projection
  to D; a few transformer blocks on top.

Methods read the pipeline in steps, so OGFR can act between blocks:

    x = backbone.embed(images, camids)      # (B, 1 + N, D) after position (and camera) embedding
    x = backbone.run_blocks(x, 0, l)        # blocks [0, l)
    x = backbone.run_blocks(x, l, None)     # the rest
    tokens = backbone.norm(x)
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from occreid.errors import OccreidError
from occreid.modeling.weights import load_matching, read_state_dict


@dataclass(frozen=True)
class ViTArch:
    embed_dim: int
    depth: int
    num_heads: int
    hybrid: bool = False  # patch embedding from the MobileNetV2 stem instead of a 16 x 16 conv


VIT_ARCHS: dict[str, ViTArch] = {
    "vit_base_patch16": ViTArch(768, 12, 12),
    "vit_small_patch16": ViTArch(384, 12, 6),
    "vit_tiny_patch16": ViTArch(192, 12, 3),
    "vit_hybrid_mnv2": ViTArch(192, 4, 3, hybrid=True),
}
PATCH_SIZE = 16
MNV2_STEM_STAGES = 14  # torchvision mobilenet_v2().features[:14]: 96 channels at output stride 16


def _overlap_patch_embed(stride: int, **kwargs) -> nn.Module:
    """timm's PatchEmbed with its conv moving by `stride` < patch size (TransReID's overlapping patches)."""
    from timm.layers import PatchEmbed

    embed = PatchEmbed(**kwargs)
    if stride != PATCH_SIZE:
        embed.proj.stride = (stride, stride)
        h, w = embed.img_size
        embed.grid_size = ((h - PATCH_SIZE) // stride + 1, (w - PATCH_SIZE) // stride + 1)
        embed.num_patches = embed.grid_size[0] * embed.grid_size[1]
    return embed


def _mnv2_stem_embed(pretrained: bool | str, **kwargs) -> nn.Module:
    """timm's HybridEmbed over the MobileNetV2 stem; `pretrained` as for the mobilenet_v2 backbone."""
    from timm.layers import HybridEmbed

    from occreid.modeling.backbone import build_backbone

    stem = build_backbone("mobilenet_v2", pretrained=pretrained, last_stride=2).features[:MNV2_STEM_STAGES]
    kwargs.pop("patch_size", None)
    return HybridEmbed(stem, patch_size=1, **kwargs)


class ViTBackbone(nn.Module):
    """A timm VisionTransformer without head. `forward_features(images (B,3,H,W)) -> tokens (B, 1 + N, D)`.

    `grid_size` (h, w) and `patch_geometry` (kernel, stride in input pixels) say which image region each patch
    token sees, e.g. for occreid.data.occlusion.patch_mask.
    """

    def __init__(
        self,
        name: str,
        image_size: tuple[int, int],
        stride: int = PATCH_SIZE,
        depth: int | None = None,
        drop_path: float = 0.1,
        num_cameras: int = 0,
        camera_coef: float = 3.0,
        pretrained: bool | str = False,
    ) -> None:
        super().__init__()
        from timm.models.vision_transformer import VisionTransformer

        if name not in VIT_ARCHS:
            raise OccreidError(f"model.backbone: unknown ViT {name!r}; choose one of {', '.join(VIT_ARCHS)}")
        arch = VIT_ARCHS[name]
        if not 1 <= stride <= PATCH_SIZE:
            raise OccreidError(f"model.vit_stride must be in 1..{PATCH_SIZE}, got {stride}")
        if arch.hybrid and stride != PATCH_SIZE:
            raise OccreidError(
                f"model.vit_stride={stride}: {name}'s MobileNetV2 stem has a fixed stride of 16; "
                "set model.vit_stride=16"
            )
        if image_size[0] < PATCH_SIZE or image_size[1] < PATCH_SIZE:
            raise OccreidError(
                f"data.image_size {tuple(image_size)} is smaller than a {PATCH_SIZE}-pixel patch"
            )
        embed_layer = (
            functools.partial(_mnv2_stem_embed, pretrained)
            if arch.hybrid
            else functools.partial(_overlap_patch_embed, stride)
        )
        self.name = name
        self.vit = VisionTransformer(
            img_size=tuple(image_size),
            patch_size=PATCH_SIZE,
            num_classes=0,
            embed_dim=arch.embed_dim,
            depth=depth or arch.depth,
            num_heads=arch.num_heads,
            drop_path_rate=drop_path,
            embed_layer=embed_layer,
        )
        self.out_channels = arch.embed_dim
        self.grid_size: tuple[int, int] = tuple(self.vit.patch_embed.grid_size)
        self.patch_geometry = (PATCH_SIZE, PATCH_SIZE if arch.hybrid else stride)
        self.camera_coef = camera_coef
        # SIE: (num_cameras, 1, D), zero-initialised so training starts from the plain ViT
        self.camera_embed = nn.Parameter(torch.zeros(num_cameras, 1, arch.embed_dim)) if num_cameras else None
        if isinstance(pretrained, str) and not arch.hybrid:
            load_vit_checkpoint(self.vit, pretrained)
        elif pretrained is True and not arch.hybrid:
            raise OccreidError(
                f"model.pretrained=true: {name} has no built-in weights; set model.pretrained to a local "
                "timm ImageNet checkpoint (e.g. vit_base_patch16_224's .safetensors or "
                "jx_vit_base_p16_224-80ecf9dd.pth) or to false"
            )

    @property
    def num_patches(self) -> int:
        return self.grid_size[0] * self.grid_size[1]

    @property
    def depth(self) -> int:
        return len(self.vit.blocks)

    def patch_pos_embed(self) -> Tensor:
        """The position embedding of the patch tokens, (1, N, D)."""
        return self.vit.pos_embed[:, self.vit.num_prefix_tokens :]

    def embed(self, images: Tensor, camids: Tensor | None = None) -> Tensor:
        """images (B,3,H,W) -> tokens (B, 1 + N, D): patch embedding, class token, position (+ camera)
        embedding."""
        x = self.vit._pos_embed(self.vit.patch_embed(images))
        if self.camera_embed is not None:
            if camids is None:  # evaluation / deployment: the mean camera, no side input
                x = x + self.camera_coef * self.camera_embed.mean(dim=0)
            else:
                # On the CPU only: on a GPU the check would cost a host sync per step; the training loader
                # checks the training set's cameras against model.num_cameras before training starts.
                on_cpu = camids.device.type == "cpu"
                low, high = (int(camids.min()), int(camids.max())) if on_cpu else (0, 0)
                if high >= len(self.camera_embed) or low < 0:
                    bad = low if low < 0 else high
                    raise OccreidError(
                        f"camera id {bad} is out of range for model.num_cameras="
                        f"{len(self.camera_embed)}; set it to the dataset's camera count"
                    )
                x = x + self.camera_coef * self.camera_embed[camids]  # (B, 1, D) broadcast over tokens
        return self.vit.norm_pre(x)

    def run_blocks(self, x: Tensor, start: int = 0, end: int | None = None) -> Tensor:
        """Transformer blocks [start, end) on tokens (B, T, D)."""
        for block in self.vit.blocks[start:end]:
            x = block(x)
        return x

    def norm(self, x: Tensor) -> Tensor:
        return self.vit.norm(x)

    def forward_features(self, images: Tensor, camids: Tensor | None = None) -> Tensor:
        """images (B,3,H,W) -> tokens (B, 1 + N, D) after the final norm: the ViT's feature map."""
        return self.norm(self.run_blocks(self.embed(images, camids)))

    @staticmethod
    def pool(tokens: Tensor) -> Tensor:
        """tokens (B, 1 + N, D) -> the class token (B, D), TransReID's global feature."""
        return tokens[:, 0]

    def forward(self, images: Tensor) -> Tensor:
        return self.forward_features(images)


def _square_grid(pos: Tensor) -> bool:
    """Whether a position embedding (1, T, D) is 0, 1 or 2 prefix tokens and a square grid of patches."""
    return pos.ndim == 3 and any(
        t > 0 and math.isqrt(t) ** 2 == t for t in (pos.shape[1] - k for k in (0, 1, 2))
    )


def load_vit_checkpoint(vit: nn.Module, path: str) -> None:
    """Load ImageNet weights into `vit`, resizing the position embedding to its grid; the classifier is
    dropped. Anything else missing, unexpected or of the wrong shape is an OccreidError naming the file."""
    from timm.models.vision_transformer import checkpoint_filter_fn

    state = read_state_dict(path, fix="give a local timm ViT checkpoint")
    pos = state.get("pos_embed")
    if pos is not None and not _square_grid(pos):
        raise OccreidError(  # timm's resize assumes a square ImageNet grid after 0-2 prefix tokens
            f"model.pretrained: {path} has a position embedding of shape {tuple(pos.shape)}, not prefix "
            "tokens plus a square grid of patches (n*n); give an ImageNet ViT checkpoint"
        )
    try:
        state = checkpoint_filter_fn(state, vit)
    except (RuntimeError, ValueError, KeyError, IndexError) as exc:
        raise OccreidError(
            f"model.pretrained: {path} does not fit this ViT ({type(exc).__name__}: {exc})"
        ) from None
    load_matching(vit, state, str(path), "this ViT", drop=("head.",), file=path)
