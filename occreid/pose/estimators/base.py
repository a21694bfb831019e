"""The one interface every image-based pose estimator implements.

An estimator takes whole ReID crops (each already a person box) and returns, per image, the 17 COCO keypoints
(order of `occreid.pose.schema.COCO_KEYPOINTS`) as a (17, 3) float32 array of x, y, confidence in the ORIGINAL
image's pixels (continuous coordinates: pixel i covers [i, i + 1)). Where no person is found the confidences
are all zero. Importers of precomputed keypoints (`coco_json`, `synthetic`) do not see images and are plain
functions.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from occreid.pose.schema import NUM_KEYPOINTS


class PoseEstimator(ABC):
    """Keypoints for a list of RGB uint8 images (H, W, 3) -> list of (17, 3) float32 arrays.

    The single-person estimators here run one image per forward pass; `predict` takes a list so that callers
    need not care. Estimators hold native resources (graphs, sessions): use them as a context manager, or call
    `close()`, when done.

        with build_estimator("mediapipe") as estimator:
            keypoints = estimator.predict(images)
    """

    name: str = "unknown"

    @property
    @abstractmethod
    def settings(self) -> dict[str, Any]:
        """Everything that changes the output (model, input size, thresholds): stored with the keypoints."""

    @abstractmethod
    def predict(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """images: RGB uint8 arrays (H, W, 3) of any size -> (17, 3) float32 x, y, conf per image."""

    def close(self) -> None:  # noqa: B027 - optional hook: estimators without native resources need no close
        """Release the estimator's resources; it cannot predict afterwards."""

    def __enter__(self) -> PoseEstimator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def no_pose() -> np.ndarray:
    """The "no person found" entry: (17, 3) zeros."""
    return np.zeros((NUM_KEYPOINTS, 3), np.float32)


def has_pose(keypoints: np.ndarray) -> bool:
    """True when any keypoint has a positive confidence."""
    return bool((np.asarray(keypoints)[:, 2] > 0).any())


def check_image(image: np.ndarray) -> np.ndarray:
    """Validate one input image: RGB uint8 (H, W, 3)."""
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise ValueError(f"images must be RGB uint8 arrays (H, W, 3), got {array.dtype} {array.shape}")
    return array


def upscale_to_canvas(
    image: np.ndarray, height: int
) -> tuple[np.ndarray, tuple[float, float], tuple[float, float]]:
    """Resize `image` to `height` rows keeping its aspect ratio and centre it on a square canvas
    (black border).

    Small ReID crops (128 x 64) are below what most estimators were trained on, and their detectors expect a
    roughly square input. Returns (canvas, (scale_x, scale_y), (offset_x, offset_y)); a canvas point (X, Y)
    maps back to the original image as ((X - offset_x) / scale_x, (Y - offset_y) / scale_y).
    """
    from PIL import Image

    h, w = image.shape[:2]
    new_w = max(1, round(w * height / h))
    resized = np.asarray(Image.fromarray(image).resize((new_w, height), Image.BILINEAR))
    side = max(height, new_w)
    canvas = np.zeros((side, side, 3), np.uint8)
    ox, oy = (side - new_w) // 2, (side - height) // 2
    canvas[oy : oy + height, ox : ox + new_w] = resized
    return canvas, (new_w / w, height / h), (float(ox), float(oy))


def outside_image_to_zero(keypoints: np.ndarray, height: int, width: int) -> np.ndarray:
    """Zero the confidence of keypoints that fall outside [0, W) x [0, H): they are not visible in the
    crop."""
    out = keypoints.copy()
    x, y = out[:, 0], out[:, 1]
    outside = (x < 0) | (x >= width) | (y < 0) | (y >= height)
    out[outside, 2] = 0
    return out
