"""Pictures of what a ViT method looks at (docs/ogfr.md sections 4 and 2), for the demo report:

    draw_erased_tokens(ogfr_method, images, "erased.png")        # the tokens OGFR's agent erases (greedy)
    attention_maps({"ViT baseline": baseline, "OGFR": ogfr}, images, "attention.png", cfg)

`images`: a (B, 3, H, W) tensor normalised as in training, or a list of image paths (read and normalised as
the config's test transform). Attention maps are the last block's class-token attention over the patch tokens,
averaged over heads, of each model's deployed ViT (for OGFR the student).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from occreid.config import Config
from occreid.errors import OccreidError
from occreid.modeling.vit import ViTBackbone


def load_images(images: Tensor | Sequence[str | Path], cfg: Config) -> Tensor:
    """A (B, 3, H, W) normalised tensor as given, or image paths through cfg's test transform."""
    if isinstance(images, Tensor):
        return images
    from occreid.data.images import read_image
    from occreid.data.transforms import build_transforms

    transform = build_transforms(cfg.data, train=False)
    return torch.stack([transform(read_image(p), None)[0] for p in images])


def _to_rgb(images: Tensor, cfg: Config) -> Tensor:
    """Normalised (B, 3, H, W) -> (B, H, W, 3) in [0, 1] for drawing."""
    mean = torch.tensor(cfg.data.mean).view(1, 3, 1, 1)
    std = torch.tensor(cfg.data.std).view(1, 3, 1, 1)
    return (images.detach().cpu().float() * std + mean).clamp(0, 1).permute(0, 2, 3, 1)


def _deployed_vit(model: nn.Module) -> tuple[nn.Module, ViTBackbone]:
    """The module that maps images to features (a method's deployed model) and its ViT."""
    if hasattr(model, "deploy"):
        model = model.deploy()
    vit = next((m for m in model.modules() if isinstance(m, ViTBackbone)), None)
    if vit is None:
        raise OccreidError(f"{type(model).__name__} has no ViT backbone; attention maps need a ViT model")
    return model.eval(), vit


def class_token_attention(attn: nn.Module, x: Tensor) -> Tensor:
    """timm Attention `attn` on its (already normed) input x (B, 1 + N, D) -> the class token's attention
    weights (B, heads, 1 + N), recomputed from its q/k projections as timm's non-fused path does."""
    b, t, _ = x.shape
    qkv = attn.qkv(x).reshape(b, t, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k, _ = qkv.unbind(0)  # (B, heads, T, head_dim)
    q, k = attn.q_norm(q), attn.k_norm(k)
    weights = ((q[:, :, :1] * attn.scale) @ k.transpose(-2, -1)).softmax(dim=-1)  # (B, heads, 1, T)
    return weights[:, :, 0]


@torch.no_grad()
def last_block_attention(model: nn.Module, images: Tensor) -> Tensor:
    """(B, 3, H, W) -> (B, gh, gw): the deployed model's last-block class-token attention over the patches,
    mean over heads, renormalised to sum to 1 over the patches."""
    deployed, vit = _deployed_vit(model)
    attn = vit.vit.blocks[-1].attn
    captured: list[Tensor] = []
    handle = attn.register_forward_pre_hook(lambda _module, args: captured.append(args[0]))
    try:
        deployed(images)
    finally:
        handle.remove()
    weights = class_token_attention(attn, captured[-1]).mean(dim=1)[:, 1:]  # (B, N)
    weights = weights / weights.sum(dim=1, keepdim=True)
    return weights.view(-1, *vit.grid_size)


def _patch_box(i: int, grid_w: int, kernel: int, stride: int) -> tuple[int, int, int, int]:
    """(x, y, width, height) in input pixels of patch token i (row-major over the grid)."""
    row, col = divmod(i, grid_w)
    return col * stride, row * stride, kernel, kernel


def _figure(rows: int, cols: int):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(rows, cols, figsize=(1.2 * cols + 0.4, 2.4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    return plt, fig, axes


@torch.no_grad()
def draw_erased_tokens(method: nn.Module, images: Tensor | Sequence[str | Path], path: str | Path) -> Tensor:
    """Draw, over each holistic image, the patch tokens OGFR's agent erases at evaluation (greedy top-k; grey
    boxes), and below it the agent's token scores (softmax). Returns the erased indices (B, k)."""
    from matplotlib.patches import Rectangle

    if getattr(method, "agent", None) is None:
        raise OccreidError("draw_erased_tokens needs an OGFR model with its agent (ogfr.fepm=agent)")
    was_training = method.training
    method.eval()
    try:
        batch = load_images(images, method.cfg)
        out = method.teacher_forward(batch)
    finally:
        method.train(was_training)
    vit = method.teacher.vit
    kernel, stride = vit.patch_geometry
    gh, gw = vit.grid_size
    h, w = batch.shape[-2:]
    rgb = _to_rgb(batch, method.cfg)
    probs = out.scores.softmax(dim=1).view(-1, 1, gh, gw)
    heat = nn.functional.interpolate(probs, size=(h, w), mode="nearest")[:, 0]
    plt, fig, axes = _figure(2, len(batch))
    for col in range(len(batch)):
        axes[0, col].imshow(rgb[col].numpy())
        for i in out.index[col].tolist():
            x, y, bw, bh = _patch_box(i, gw, kernel, stride)
            axes[0, col].add_patch(
                Rectangle(
                    (x - 0.5, y - 0.5),
                    bw,
                    bh,
                    facecolor=(0.5, 0.5, 0.5, 0.75),
                    edgecolor="white",
                    linewidth=0.8,
                )
            )
        axes[1, col].imshow(rgb[col].numpy())
        axes[1, col].imshow(heat[col].numpy(), cmap="jet", alpha=0.5)
    axes[0, 0].set_title(f"erased ({out.index.shape[1]} of {gh * gw})", loc="left", fontsize=8)
    axes[1, 0].set_title("agent scores", loc="left", fontsize=8)
    _save(plt, fig, path)
    return out.index


@torch.no_grad()
def attention_maps(
    models: dict[str, nn.Module], images: Tensor | Sequence[str | Path], path: str | Path, cfg: Config
) -> dict[str, Tensor]:
    """One row per model (a method or its deployed module) of last-block class-token attention over the images
    (e.g. occluded queries), under a row of the images. Returns {name: (B, gh, gw) attention}."""
    batch = load_images(images, cfg)
    h, w = batch.shape[-2:]
    rgb = _to_rgb(batch, cfg)
    maps = {name: last_block_attention(model, batch) for name, model in models.items()}
    plt, fig, axes = _figure(len(models) + 1, len(batch))
    for col in range(len(batch)):
        axes[0, col].imshow(rgb[col].numpy())
        for row, attention in enumerate(maps.values(), start=1):
            up = nn.functional.interpolate(
                attention[col][None, None], size=(h, w), mode="bilinear", align_corners=False
            )[0, 0]
            up = (up - up.min()) / (up.max() - up.min() + 1e-8)
            axes[row, col].imshow(rgb[col].numpy())
            axes[row, col].imshow(up.numpy(), cmap="jet", alpha=0.5)
    for row, name in enumerate(["image", *maps]):
        axes[row, 0].set_title(name, loc="left", fontsize=8)
    _save(plt, fig, path)
    return maps


def _save(plt, fig, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
