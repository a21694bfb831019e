"""Image transforms that carry the image's keypoints with it (the BoT recipe used by both papers).

Train: resize to (H, W) -> random horizontal flip -> zero-pad by `pad` -> random crop back to (H, W)
-> to tensor -> normalise -> random erasing.  Test: resize -> to tensor -> normalise.

Keypoints are a (17, 3) float array of (x, y, confidence) in the pixel coordinates of the *current* image.
Coordinates are continuous: pixel column i covers [i, i + 1), so its centre is i + 0.5 and an image of width W
spans [0, W). The same convention is used by the part heatmaps. Under it

    resize (w0, h0) -> (W, H):   x' = x * W / w0,  y' = y * H / h0
    pad by p:                    x' = x + p,       y' = y + p
    crop at (left, top):         x' = x - left,    y' = y - top
    horizontal flip:             x' = W - x        and every left/right keypoint pair swaps rows
                                                   (KEYPOINT_FLIP)

After the crop a keypoint outside [0, W) x [0, H) gets confidence 0 (its coordinates are kept). Random erasing
leaves keypoints alone: an erased (occluded) keypoint is still where it was.

Random numbers come from torch (the global generator unless a step is given its own), so DataLoader workers,
which torch seeds from the loader's generator, draw different but reproducible augmentations.

    transform = build_transforms(cfg.data, train=True)
    image, kpts = transform(Image.open(path).convert("RGB"), kpts)   # (3, H, W) float tensor, (17, 3) array
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch

from occreid.pose.schema import KEYPOINT_FLIP, NUM_KEYPOINTS

if TYPE_CHECKING:
    from PIL.Image import Image

    from occreid.config import DataConfig

ArrayOrTensor = TypeVar("ArrayOrTensor", np.ndarray, torch.Tensor)
Keypoints = np.ndarray | None  # (17, 3) float32: x, y, confidence


def flip_keypoints(kpts: ArrayOrTensor, width: float) -> ArrayOrTensor:
    """Mirror keypoints for a horizontally flipped image of width `width`: x -> width - x, left <-> right.

    `kpts` is (..., 17, 3) (x, y, confidence), a numpy array or a torch tensor (e.g. a (B, 17, 3) batch for
    test-time flip). Returns a new array/tensor of the same type; flipping twice gives back the input.
    """
    if kpts.shape[-2:] != (NUM_KEYPOINTS, 3):
        raise ValueError(f"keypoints must have shape (..., {NUM_KEYPOINTS}, 3), got {tuple(kpts.shape)}")
    if isinstance(kpts, torch.Tensor):
        out = kpts[..., list(KEYPOINT_FLIP), :].clone()
    else:
        out = np.array(kpts[..., list(KEYPOINT_FLIP), :], copy=True)
    out[..., 0] = width - out[..., 0]
    return out


def _image_size(img: Image | torch.Tensor) -> tuple[int, int]:
    """(height, width) of a PIL image or a (C, H, W) tensor."""
    if isinstance(img, torch.Tensor):
        return int(img.shape[-2]), int(img.shape[-1])
    return img.height, img.width


def _rand(generator: torch.Generator | None) -> float:
    return float(torch.rand((), generator=generator))


def _randint(high: int, generator: torch.Generator | None) -> int:
    """Uniform integer in [0, high]."""
    return int(torch.randint(0, high + 1, (), generator=generator))


class Resize:
    """Resize to (H, W) (bicubic with antialiasing, like BoT's interpolation=3); scales the keypoints."""

    def __init__(self, size: tuple[int, int]) -> None:
        self.size = (int(size[0]), int(size[1]))

    def __call__(self, img: Image, kpts: Keypoints) -> tuple[Image, Keypoints]:
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as F

        h0, w0 = _image_size(img)
        height, width = self.size
        if (h0, w0) != (height, width):
            img = F.resize(img, [height, width], interpolation=InterpolationMode.BICUBIC, antialias=True)
        if kpts is not None:
            kpts = kpts.copy()
            kpts[:, 0] *= width / w0
            kpts[:, 1] *= height / h0
        return img, kpts


class RandomHorizontalFlip:
    """With probability `p`, mirror the image and its keypoints (`flip_keypoints`)."""

    def __init__(self, p: float = 0.5, generator: torch.Generator | None = None) -> None:
        self.p = p
        self.generator = generator

    def __call__(self, img: Image, kpts: Keypoints) -> tuple[Image, Keypoints]:
        from torchvision.transforms import functional as F

        if self.p <= 0 or _rand(self.generator) >= self.p:
            return img, kpts
        _, width = _image_size(img)
        return F.hflip(img), (None if kpts is None else flip_keypoints(kpts, width))


class Pad:
    """Zero-pad `pad` pixels on every side; keypoints shift by (pad, pad)."""

    def __init__(self, pad: int) -> None:
        self.pad = int(pad)

    def __call__(self, img: Image, kpts: Keypoints) -> tuple[Image, Keypoints]:
        from torchvision.transforms import functional as F

        if self.pad == 0:
            return img, kpts
        img = F.pad(img, [self.pad], fill=0, padding_mode="constant")
        if kpts is not None:
            kpts = kpts.copy()
            kpts[:, :2] += self.pad
        return img, kpts


class RandomCrop:
    """Crop a random (H, W) window; keypoints shift by (-left, -top) and lose their confidence outside it.

    The offsets are drawn as top = randint(0, h - H), then left = randint(0, w - W) (inclusive bounds), both
    from `generator` (torch's global generator if None).
    """

    def __init__(self, size: tuple[int, int], generator: torch.Generator | None = None) -> None:
        self.size = (int(size[0]), int(size[1]))
        self.generator = generator

    def get_params(self, img: Image | torch.Tensor) -> tuple[int, int]:
        """(top, left) of the crop window."""
        h, w = _image_size(img)
        height, width = self.size
        if h < height or w < width:
            raise ValueError(f"cannot crop {height}x{width} out of a {h}x{w} image")
        top = _randint(h - height, self.generator)
        left = _randint(w - width, self.generator)
        return top, left

    def __call__(self, img: Image, kpts: Keypoints) -> tuple[Image, Keypoints]:
        from torchvision.transforms import functional as F

        top, left = self.get_params(img)
        height, width = self.size
        img = F.crop(img, top, left, height, width)
        if kpts is not None:
            kpts = kpts.copy()
            kpts[:, 0] -= left
            kpts[:, 1] -= top
            outside = (kpts[:, 0] < 0) | (kpts[:, 0] >= width) | (kpts[:, 1] < 0) | (kpts[:, 1] >= height)
            kpts[outside, 2] = 0.0
        return img, kpts


class ToTensorNormalize:
    """PIL RGB image -> (3, H, W) float32 tensor (x / 255 - mean) / std per channel.

    Done in numpy (one fused single-threaded pass) rather than torch's to_tensor + normalize: the same numbers
    up to float rounding, and no intra-op thread pool fighting the trainer for cores when num_workers = 0.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean = [float(m) for m in mean]
        self.std = [float(s) for s in std]
        std_ = np.asarray(self.std, dtype=np.float32)
        self._scale = 1.0 / (255.0 * std_)
        self._shift = np.asarray(self.mean, dtype=np.float32) / std_

    def __call__(self, img: Image, kpts: Keypoints) -> tuple[torch.Tensor, Keypoints]:
        pixels = np.asarray(img, dtype=np.float32)  # (H, W, 3)
        if pixels.ndim != 3 or pixels.shape[2] != 3:
            raise ValueError(f"expected an RGB image, got an array of shape {pixels.shape}")
        chw = np.empty((3, *pixels.shape[:2]), dtype=np.float32)
        for c in range(3):
            np.multiply(pixels[:, :, c], self._scale[c], out=chw[c])
            chw[c] -= self._shift[c]
        return torch.from_numpy(chw), kpts


class RandomErasing:
    """Random erasing (Zhong et al. 2017) with torchvision's `RandomErasing` semantics, on the normalised
    tensor.

    With probability `p`, up to 10 attempts draw an area fraction s ~ U(scale) and a log-uniform aspect ratio
    r in `ratio`; the box is h = round(sqrt(s * H * W * r)), w = round(sqrt(s * H * W / r)) and is used when
    it fits, at a uniform position. The box is filled with `value` = 0, which on the normalised tensor is the
    per-channel mean colour (Zhong's "fill with the mean"). Keypoints are unchanged.
    """

    def __init__(
        self,
        p: float = 0.5,
        scale: tuple[float, float] = (0.02, 0.4),
        ratio: tuple[float, float] = (0.3, 3.3),
        value: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> None:
        self.p = p
        self.scale = scale
        self.log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
        self.value = value
        self.generator = generator

    def get_params(self, img: torch.Tensor) -> tuple[int, int, int, int] | None:
        """(top, left, h, w) of the box, or None when no attempt fitted."""
        height, width = _image_size(img)
        area = height * width
        for _ in range(10):
            target = area * (self.scale[0] + (self.scale[1] - self.scale[0]) * _rand(self.generator))
            aspect = math.exp(
                self.log_ratio[0] + (self.log_ratio[1] - self.log_ratio[0]) * _rand(self.generator)
            )
            h = round(math.sqrt(target * aspect))
            w = round(math.sqrt(target / aspect))
            if 0 < h < height and 0 < w < width:
                return _randint(height - h, self.generator), _randint(width - w, self.generator), h, w
        return None

    def __call__(self, img: torch.Tensor, kpts: Keypoints) -> tuple[torch.Tensor, Keypoints]:
        if self.p <= 0 or _rand(self.generator) >= self.p:
            return img, kpts
        box = self.get_params(img)
        if box is not None:
            top, left, h, w = box
            img = img.clone()
            img[..., top : top + h, left : left + w] = self.value
        return img, kpts


class ReidTransform:
    """A chain of keypoint-aware steps:
    `(PIL image, (17, 3) keypoints or None) -> ((3, H, W) tensor, keypoints)`.

    The input keypoints are never modified; the returned ones are a float32 copy in the output image's pixels.
    """

    def __init__(self, steps: Sequence[Any]) -> None:
        self.steps = list(steps)

    def __call__(
        self, img: Image, keypoints: np.ndarray | None = None
    ) -> tuple[torch.Tensor, np.ndarray | None]:
        kpts = None
        if keypoints is not None:
            kpts = np.array(keypoints, dtype=np.float32, copy=True)
            if kpts.shape != (NUM_KEYPOINTS, 3):
                raise ValueError(f"keypoints must have shape ({NUM_KEYPOINTS}, 3), got {kpts.shape}")
        out: Any = img
        for step in self.steps:
            out, kpts = step(out, kpts)
        return out, kpts

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(type(s).__name__ for s in self.steps)})"


def build_transforms(cfg: DataConfig, train: bool, erasing: bool = True) -> ReidTransform:
    """The BoT train/test transforms from `cfg` (image_size, flip_prob, pad, erasing_prob, mean, std);
    `erasing=False` leaves random erasing out (a caller that erases one view only applies it itself)."""
    size = tuple(cfg.image_size)
    steps: list[Any] = [Resize(size)]
    if train:
        steps += [RandomHorizontalFlip(cfg.flip_prob)]
        if cfg.pad > 0:
            steps += [Pad(cfg.pad), RandomCrop(size)]
    steps += [ToTensorNormalize(cfg.mean, cfg.std)]
    if train and erasing and cfg.erasing_prob > 0:
        steps += [RandomErasing(cfg.erasing_prob)]
    return ReidTransform(steps)
