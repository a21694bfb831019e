"""A visual check of keypoints and part heatmaps: one row per image, the image with its skeleton, then the 8
part heatmaps H_k (as rendered for training, at feature-map resolution) overlaid on the image.

Images are resized to the network input size first and keypoints scaled with them, exactly as the training
transform does, so what you see is what the model pools with.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from occreid.config import PoseConfig
from occreid.pose.schema import COCO_KEYPOINTS, NUM_PARTS, PART_GROUPS, PART_KEYPOINT_INDICES
from occreid.utils.files import atomic_write, picture_format

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# COCO's skeleton as pairs of keypoint indices.
SKELETON: tuple[tuple[int, int], ...] = (
    (15, 13),
    (13, 11),
    (16, 14),
    (14, 12),
    (11, 12),
    (5, 11),
    (6, 12),
    (5, 6),
    (5, 7),
    (6, 8),
    (7, 9),
    (8, 10),
    (1, 2),
    (0, 1),
    (0, 2),
    (1, 3),
    (2, 4),
    (3, 5),
    (4, 6),
)

_KEYPOINT_GROUP = {n: k for k, idx in enumerate(PART_KEYPOINT_INDICES) for n in idx}


def resize_with_keypoints(
    image: np.ndarray, keypoints: np.ndarray, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Resize an RGB image to size (H, W) and scale its (17, 3) keypoints' x, y with it
    (continuous coords)."""
    from PIL import Image

    height, width = size
    h0, w0 = image.shape[:2]
    resized = np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))
    kpts = np.asarray(keypoints, np.float32).copy()
    kpts[:, 0] *= width / w0
    kpts[:, 1] *= height / h0
    return resized, kpts


# Layout of the grid: one row per image, 1 + 8 panels per row.
PANEL_WIDTH_IN, ROW_HEIGHT_IN, DPI = 1.1, 3.0, 110


def pose_grid_figure(
    images: Sequence[np.ndarray],
    keypoints: Sequence[np.ndarray],
    cfg: PoseConfig | None = None,
    image_size: tuple[int, int] = (384, 128),
    last_stride: int = 1,
    titles: Sequence[str] | None = None,
) -> Figure:
    """The grid as a Figure (see `draw_pose_grid`); fig.axes[9 * row] shows image `row` in input pixels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from occreid.pose.heatmaps import feature_map_size, mass_near_peak, part_visibility, render_part_heatmaps

    cfg = cfg or PoseConfig()
    image_size = (int(image_size[0]), int(image_size[1]))
    feature_size = feature_map_size(image_size, last_stride)
    colors = plt.get_cmap("tab10").colors
    n = len(images)
    cols = 1 + NUM_PARTS
    figsize = (cols * PANEL_WIDTH_IN, n * ROW_HEIGHT_IN)
    fig, axes = plt.subplots(n, cols, figsize=figsize, dpi=DPI, squeeze=False)
    for row, (image, kpts) in enumerate(zip(images, keypoints)):
        img, k = resize_with_keypoints(image, kpts, image_size)
        kt = torch.from_numpy(k)[None]
        maps = render_part_heatmaps(kt, image_size, feature_size, cfg)[0]  # (8, h, w)
        visible = part_visibility(kt, cfg)[0]
        mass = mass_near_peak(maps[None])[0]
        ax = axes[row, 0]
        ax.imshow(img)
        shown = k[:, 2] >= cfg.conf_threshold
        for a, b in SKELETON:
            if shown[a] and shown[b]:
                ax.plot(
                    [k[a, 0] - 0.5, k[b, 0] - 0.5], [k[a, 1] - 0.5, k[b, 1] - 0.5], "-", color="white", lw=1
                )
        for i in range(len(COCO_KEYPOINTS)):
            if shown[i]:  # imshow puts pixel i's centre at i, our continuous centre is i + 0.5
                ax.plot(
                    k[i, 0] - 0.5,
                    k[i, 1] - 0.5,
                    "o",
                    ms=3,
                    color=colors[_KEYPOINT_GROUP[i]],
                    mec="black",
                    mew=0.4,
                )
        ax.set_title(titles[row] if titles else f"#{row}", fontsize=6)
        for g in range(NUM_PARTS):
            ax = axes[row, 1 + g]
            up = maps[g][None, None]
            up = torch.nn.functional.interpolate(up, size=image_size, mode="nearest")[0, 0].numpy()
            if visible[g]:
                ax.imshow(img)
                ax.imshow(up / max(up.max(), 1e-12), cmap="jet", alpha=0.5, vmin=0, vmax=1)
                ax.set_title(f"{PART_GROUPS[g]}\n{float(mass[g]):.2f}", fontsize=5, color=colors[g])
            else:
                ax.imshow((img * 0.3).astype(np.uint8))
                ax.set_title(f"{PART_GROUPS[g]}\nempty", fontsize=5, color="grey")
        for ax in axes[row]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout(pad=0.2)
    return fig


def draw_pose_grid(
    images: Sequence[np.ndarray],
    keypoints: Sequence[np.ndarray],
    out: str | Path,
    cfg: PoseConfig | None = None,
    image_size: tuple[int, int] = (384, 128),
    last_stride: int = 1,
    titles: Sequence[str] | None = None,
) -> Path:
    """Write a PNG grid: per image (resized to `image_size`, keypoints with it), the skeleton and the 8 part
    heatmaps at the feature-map size of a ResNet with `last_stride` (`heatmaps.feature_map_size`: 24 x 8 for
    384 x 128 at last stride 1, 12 x 4 at 2), upsampled to the image.

    The PNG is (1 + 8) * PANEL_WIDTH_IN * DPI wide and len(images) * ROW_HEIGHT_IN * DPI high. Keypoint
    markers take their group's tab10 colour. Each heatmap panel is titled with the group name and the share of
    its mass within one cell of its peak; empty (invisible) groups are drawn greyed with "empty".
    """
    import matplotlib.pyplot as plt

    fig = pose_grid_figure(images, keypoints, cfg, image_size, last_stride, titles)
    out = Path(out)
    with atomic_write(out) as f:
        fig.savefig(f, dpi=DPI, format=picture_format(out))
    plt.close(fig)
    return out
