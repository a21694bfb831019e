"""A picture of the typed occlusion augmentation: for training images of a config, the holistic view x, the
occluded view x~, the occluder's pixel mask (white) with the ViT patch mask's grid outline (red: patches with
m = 1) and the type/source label. `occreid data augment-preview` draws it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from occreid.config import Config
from occreid.data.records import ImageRecord
from occreid.utils.files import atomic_write, picture_format


def _to_rgb(view: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """(3, H, W) normalised -> (H, W, 3) uint8."""
    m, s = torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)
    return (view * s + m).clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()


def make_augment_preview(
    cfg: Config,
    records: Sequence[ImageRecord],
    out: str | Path,
    num: int = 16,
    per_row: int = 4,
    seed: int = 0,
    held_out: bool = False,
    patch_size: int = 16,
    stride: int = 16,
    scale: int = 2,
) -> Path:
    """Draw `num` training images (every len/num-th record) with their occluded views and save a PNG at `out`.

    `held_out=True` draws only the held-out types/sources (cfg.occlusion.held_out_*). Draws are seeded by
    `seed`. The patch grid is that of a ViT with `patch_size`/`stride`. Returns `out`.
    """
    from PIL import Image, ImageDraw

    from occreid.data.loaders import PairedViewDataset
    from occreid.data.occlusion import OcclusionAugment, patch_mask
    from occreid.data.transforms import build_transforms

    d = cfg.data
    augment = OcclusionAugment(cfg.occlusion, d.image_size, d.mean, d.std, held_out=held_out)
    dataset = PairedViewDataset(records, build_transforms(d, train=True), augment)
    H, W = d.image_size
    tw, th = W * scale, H * scale
    cell_w, cell_h = 3 * tw + 12, th + 16
    rows = (num + per_row - 1) // per_row
    sheet = Image.new("RGB", (per_row * cell_w + 4, rows * cell_h + 4), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    torch.manual_seed(seed)
    picks = np.linspace(0, len(records) - 1, num).round().astype(int)
    gh, gw = 1 + (H - patch_size) // stride, 1 + (W - patch_size) // stride
    for n, index in enumerate(picks):
        item, occ = dataset.views(int(index))
        occluded, mask = augment.paste(item["images"], occ)
        covered = patch_mask(mask[None], patch_size, stride, cfg.occlusion.mask_threshold)[0].view(gh, gw)
        tiles = [_to_rgb(item["images"], d.mean, d.std), _to_rgb(occluded, d.mean, d.std)]
        tiles.append(np.repeat((mask[0].numpy() * 255).astype(np.uint8)[:, :, None], 3, axis=2))
        x0, y0 = 4 + (n % per_row) * cell_w, 4 + (n // per_row) * cell_h
        for c, tile in enumerate(tiles):
            image = Image.fromarray(tile).resize((tw, th), Image.NEAREST)
            if c == 2:  # the patches with m = 1
                overlay = ImageDraw.Draw(image)
                for i, j in zip(*np.nonzero(covered.numpy())):
                    top, left = i * stride * scale, j * stride * scale
                    box = (left, top, left + patch_size * scale - 1, top + patch_size * scale - 1)
                    overlay.rectangle(box, outline=(255, 0, 0))
            sheet.paste(image, (x0 + c * (tw + 4), y0))
        label = occ.type if occ.source is None else f"{occ.type} / {occ.source}"
        draw.text((x0, y0 + th + 2), label, fill=(0, 0, 0))
    out = Path(out)
    with atomic_write(out) as f:
        sheet.save(f, format=picture_format(out))
    return out
