"""Render stored keypoints into the K = 8 part heatmaps H_k of PGFL-KD (paper section 3.1, Eq. 1).

The pose estimator runs once per dataset (`occreid pose extract`); during training the keypoints travel with
the image through the augmentations (resize, flip, pad/crop) and are rendered here, on the training device, at
the resolution of the backbone feature map F (24 x 8 for a 384 x 128 input with last stride 1). Rendering
after the augmentations is exact under flips and crops, and independent of the estimator.

Recipe, for keypoints (B, 17, 3) = (x, y, conf) in the pixel coordinates of the network input of size (H, W):

1. Coordinates are continuous: pixel i covers [i, i + 1). With strides s_y = H / h, s_x = W / w, feature cell
   (i, j) covers pixels [j s_x, (j + 1) s_x) and its centre is at ((j + 0.5) s_x, (i + 0.5) s_y). A keypoint's
   feature-cell coordinates are u = x / s_x, v = y / s_y, so it lies in cell (floor(v), floor(u)).
2. Per keypoint n a Gaussian over the cells, std sigma in cells, scaled by the confidence:
       G_n(i, j) = c_n * exp(-((j + 0.5 - u_n)^2 + (i + 0.5 - v_n)^2) / (2 sigma^2)),
   and c_n := 0 (the keypoint is dropped) when c_n < cfg.conf_threshold.
3. Merge into the 8 groups of `occreid.pose.schema.PART_GROUPS`: M_k = max_n G_n or sum_n G_n over the group's
   keypoints (`cfg.merge`).
4. Spatial normalisation (the paper's softmax): H_k = softmax(M_k / T) over the h * w positions, T =
   `cfg.softmax_temperature`; each visible group's map sums to 1.
5. A group with no keypoint at or above the threshold is "empty": `cfg.empty_group` = "zero" makes H_k = 0, so
   the part feature pooled with it (Eq. 1) is zero and an occluded part contributes nothing; "uniform" makes
   H_k = 1 / (h w), so the part feature becomes the global average feature. `part_visibility` returns which
   groups are visible, for the models to mask their losses.

With the defaults (sigma = 1 cell, T = 0.1, conf = 1) a lone keypoint at a cell centre puts about 91% of its
group's mass on that cell and about 99% within one cell of it (3 x 3 neighbourhood); see docs/pose.md for the
measurements behind this and for how confidence flattens the map.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from occreid.config import PoseConfig
from occreid.pose.schema import NUM_KEYPOINTS, NUM_PARTS, PART_KEYPOINT_INDICES


def _check_keypoints(keypoints: Tensor) -> None:
    if keypoints.ndim != 3 or keypoints.shape[1:] != (NUM_KEYPOINTS, 3):
        raise ValueError(f"keypoints must have shape (B, 17, 3), got {tuple(keypoints.shape)}")


def feature_map_size(image_size: tuple[int, int], last_stride: int = 1) -> tuple[int, int]:
    """(h, w) of the ResNet feature map F for an (H, W) input: output stride 16 with last_stride 1, 32 with 2.

    Each of the ResNet's stride-2 stages (stem conv, max pool, layer2, layer3, and layer4 unless last_stride
    is 1) maps n pixels to ceil(n / 2), so 384 x 128 gives 24 x 8 (last stride 1) or 12 x 4 (last stride 2).
    """
    if last_stride not in (1, 2):
        raise ValueError(f"last_stride must be 1 or 2, got {last_stride}")
    h, w = image_size
    for _ in range(4 if last_stride == 1 else 5):
        h, w = -(-h // 2), -(-w // 2)
    return h, w


def part_membership(device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
    """(8, 17) 0/1 matrix: entry (k, n) is 1 when keypoint n belongs to part group k. Built once per device
    and dtype and cached: on a GPU, building it costs blocking host-to-device copies, three times a step."""
    return _part_membership(torch.device(device or "cpu"), dtype)


@functools.cache
def _part_membership(device: torch.device, dtype: torch.dtype) -> Tensor:
    with torch.inference_mode(False):  # a normal tensor even when first asked for inside evaluation
        member = torch.zeros(NUM_PARTS, NUM_KEYPOINTS, dtype=dtype)
        for k, indices in enumerate(PART_KEYPOINT_INDICES):
            member[k, list(indices)] = 1
        return member.to(device)


def keypoint_visibility(keypoints: Tensor, cfg: PoseConfig) -> Tensor:
    """(B, 17, 3) keypoints -> (B, 17) bool: confidence at or above `cfg.conf_threshold` (and above 0)."""
    _check_keypoints(keypoints)
    conf = keypoints[..., 2]
    return (conf >= cfg.conf_threshold) & (conf > 0)


def part_visibility(keypoints: Tensor, cfg: PoseConfig) -> Tensor:
    """(B, 17, 3) keypoints -> (B, 8) bool: a part group is visible when any of its keypoints is."""
    visible = keypoint_visibility(keypoints, cfg).float()  # (B, 17)
    member = part_membership(keypoints.device)  # (8, 17)
    return (visible @ member.T) > 0  # (B, 8)


def keypoint_gaussians(
    keypoints: Tensor, image_size: tuple[int, int], feature_size: tuple[int, int], cfg: PoseConfig
) -> Tensor:
    """Confidence-scaled Gaussians G_n (step 2 of the module recipe): (B, 17, 3) -> (B, 17, h, w).

    Keypoints below the confidence threshold give all-zero maps.
    """
    _check_keypoints(keypoints)
    height, width = image_size
    h, w = feature_size
    kpts = keypoints if keypoints.is_floating_point() else keypoints.float()
    u = kpts[..., 0] * (w / width)  # (B, 17) in feature cells
    v = kpts[..., 1] * (h / height)
    conf = torch.where(keypoint_visibility(kpts, cfg), kpts[..., 2], torch.zeros_like(kpts[..., 2]))
    cols = torch.arange(w, device=kpts.device, dtype=kpts.dtype) + 0.5  # cell centres
    rows = torch.arange(h, device=kpts.device, dtype=kpts.dtype) + 0.5
    dx2 = (cols.view(1, 1, 1, w) - u[..., None, None]) ** 2  # (B, 17, 1, w)
    dy2 = (rows.view(1, 1, h, 1) - v[..., None, None]) ** 2  # (B, 17, h, 1)
    return conf[..., None, None] * torch.exp(-(dx2 + dy2) / (2 * cfg.sigma**2))  # (B, 17, h, w)


def merge_part_groups(gaussians: Tensor, merge: str) -> Tensor:
    """Merge per-keypoint maps (B, 17, h, w) into the 8 part groups (B, 8, h, w) by "max" or "sum"."""
    member = part_membership(gaussians.device, gaussians.dtype)  # (8, 17)
    if merge == "sum":
        return torch.einsum("kn,bnhw->bkhw", member, gaussians)
    if merge == "max":
        # Gaussians are >= 0, so masking the non-members with 0 leaves the max over the members.
        return (gaussians.unsqueeze(1) * member[None, :, :, None, None]).amax(dim=2)
    raise ValueError(f"merge must be 'max' or 'sum', got {merge!r}")


def render_part_heatmaps(
    keypoints: Tensor, image_size: tuple[int, int], feature_size: tuple[int, int], cfg: PoseConfig
) -> Tensor:
    """The PGFL-KD part heatmaps H_k (section 3.1), normalised for pooling with Eq. 1.

    Args:
        keypoints: (B, 17, 3) x, y, confidence in pixels of the network input (pixel i covers [i, i + 1)).
        image_size: (H, W) of the network input, e.g. (384, 128).
        feature_size: (h, w) of the feature map F, e.g. (24, 8).
        cfg: sigma, conf_threshold, merge, softmax_temperature, empty_group.

    Returns:
        (B, 8, h, w) on the keypoints' device, groups in `PART_GROUPS` order. Each visible group sums to 1
        over the h * w positions; an empty group is all zeros (empty_group="zero") or 1 / (h w) ("uniform").

    Example:
        >>> from occreid.config import PoseConfig
        >>> kpts = torch.zeros(2, 17, 3); kpts[:, 0] = torch.tensor([64.0, 40.0, 1.0])  # a nose only
        >>> maps = render_part_heatmaps(kpts, (384, 128), (24, 8), PoseConfig())
        >>> maps.shape, round(float(maps[0, 0].sum()), 4), float(maps[0, 1:].sum())
        (torch.Size([2, 8, 24, 8]), 1.0, 0.0)
    """
    if cfg.softmax_temperature <= 0:
        raise ValueError(f"pose.softmax_temperature must be > 0, got {cfg.softmax_temperature}")
    if cfg.sigma <= 0:
        raise ValueError(f"pose.sigma must be > 0, got {cfg.sigma}")
    merged = merge_part_groups(keypoint_gaussians(keypoints, image_size, feature_size, cfg), cfg.merge)
    b, k, h, w = merged.shape
    maps = torch.softmax(merged.reshape(b, k, h * w) / cfg.softmax_temperature, dim=-1).reshape(b, k, h, w)
    visible = part_visibility(keypoints, cfg)[..., None, None]  # (B, 8, 1, 1)
    if cfg.empty_group == "zero":
        return torch.where(visible, maps, torch.zeros_like(maps))
    if cfg.empty_group == "uniform":
        return torch.where(visible, maps, torch.full_like(maps, 1.0 / (h * w)))
    raise ValueError(f"pose.empty_group must be 'zero' or 'uniform', got {cfg.empty_group!r}")


def mass_near_peak(heatmaps: Tensor, radius: int = 1) -> Tensor:
    """Fraction of each map's mass within `radius` cells (Chebyshev) of its argmax: (B, K, h, w) -> (B, K).

    A diagnostic for choosing `softmax_temperature` (1.0 would mean one-hot within the neighbourhood)."""
    b, k, h, w = heatmaps.shape
    flat = heatmaps.reshape(b, k, h * w)
    peak = flat.argmax(dim=-1)  # (B, K)
    pr, pc = peak // w, peak % w
    rows = torch.arange(h, device=heatmaps.device).view(1, 1, h, 1)
    cols = torch.arange(w, device=heatmaps.device).view(1, 1, 1, w)
    near = ((rows - pr[..., None, None]).abs() <= radius) & ((cols - pc[..., None, None]).abs() <= radius)
    total = flat.sum(dim=-1).clamp_min(1e-12)
    return (heatmaps * near).sum(dim=(-2, -1)) / total
