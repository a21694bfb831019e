"""RTMPose / ViTPose through the rtmlib package (ONNX Runtime), top-down on the whole crop.

A ReID image is already a person box, so there is no detector: the box is the full image, [0, 0, W, H], which
rtmlib enlarges by its usual 1.25 padding and warps to the model's input size. The model is a local `.onnx`
file (`--model PATH`): rtmlib would otherwise download it, which fails offline. The input size is read from
the ONNX graph, and the family from its outputs: two outputs (SimCC x/y) are RTMPose, one (N, 17, h, w) heatmap
output is ViTPose. Confidences are the model's scores clipped to [0, 1]; keypoints outside the crop get 0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from occreid.errors import OccreidError
from occreid.pose.estimators.base import PoseEstimator, check_image, outside_image_to_zero
from occreid.pose.schema import NUM_KEYPOINTS

MODEL_HINT = (
    "download a COCO-17 body model once on a machine with internet and pass it with --model PATH, e.g. "
    "RTMPose-m 256x192 (the rtmpose-m_simcc-body7_pt-body7_420e-256x192 onnx zip listed in rtmlib's README / "
    "https://github.com/open-mmlab/mmpose/tree/main/projects/rtmpose, unzip to get end2end.onnx) or a ViTPose "
    "onnx export; rtmlib's automatic download does not work offline"
)


def full_image_bbox(image: np.ndarray) -> list[float]:
    """The person box of a ReID crop: the whole image, [x0, y0, x1, y1] = [0, 0, W, H]."""
    return [0.0, 0.0, float(image.shape[1]), float(image.shape[0])]


class RtmlibPose(PoseEstimator):
    """rtmlib's RTMPose or ViTPose on a local ONNX file, one crop at a time."""

    name = "rtmlib"

    def __init__(self, model: str | Path | None, device: str = "cpu"):
        if model is None:
            raise OccreidError(f"the rtmlib estimator needs a local ONNX pose model: {MODEL_HINT}")
        path = Path(model)
        if not path.is_file():
            raise OccreidError(f"--model {path}: file not found; {MODEL_HINT}")
        if path.suffix.lower() != ".onnx":
            raise OccreidError(f"--model {path}: expected an .onnx file; {MODEL_HINT}")
        try:
            import onnxruntime  # noqa: F401
            from rtmlib import RTMPose, ViTPose
        except ImportError as exc:
            raise OccreidError(f"the rtmlib estimator needs rtmlib and onnxruntime: pip install 'occreid[pose]' ({exc})") from None
        import onnxruntime as ort

        try:
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise OccreidError(f"--model {path}: onnxruntime cannot load it ({exc})") from None
        shape = session.get_inputs()[0].shape  # [N, 3, H, W]
        if len(shape) != 4 or not all(isinstance(s, int) for s in shape[2:]):
            raise OccreidError(f"--model {path}: expected a fixed (N, 3, H, W) input, got {shape}")
        self.input_size = (int(shape[3]), int(shape[2]))  # rtmlib's (w, h)
        outputs = session.get_outputs()
        self.family = "rtmpose" if len(outputs) == 2 else "vitpose"
        if self.family == "vitpose" and len(outputs[0].shape) != 4:
            raise OccreidError(f"--model {path}: outputs {[o.shape for o in outputs]} are neither SimCC nor heatmaps")
        del session
        self.model = path
        self.device = device
        cls = RTMPose if self.family == "rtmpose" else ViTPose
        self._model = cls(str(path), model_input_size=self.input_size, backend="onnxruntime", device=device)

    @property
    def settings(self) -> dict[str, Any]:
        import rtmlib

        return {
            "rtmlib": getattr(rtmlib, "__version__", "unknown"),
            "family": self.family,
            "model": self.model.name,
            "input_size_wh": list(self.input_size),
            "bbox": "full image, padding 1.25",
        }

    def predict_one(self, image: np.ndarray) -> np.ndarray:
        image = check_image(image)
        # RGB in: RTMPose/ViTPose were trained on RGB (mmpose's bgr_to_rgb=True) and rtmlib's mean/std are in RGB
        # order, but rtmlib does not convert OpenCV's BGR itself (rtmlib issue #48), so we pass our RGB as is.
        keypoints, scores = self._model(image, bboxes=[full_image_bbox(image)])
        return decode_rtmlib_output(keypoints, scores, image.shape[0], image.shape[1])

    def predict(self, images: list[np.ndarray]) -> list[np.ndarray]:
        return [self.predict_one(image) for image in images]


def decode_rtmlib_output(keypoints: np.ndarray, scores: np.ndarray, height: int, width: int) -> np.ndarray:
    """rtmlib's (1, 17, 2) keypoints and (1, 17) scores for one box -> our (17, 3) x, y, conf in [0, 1].

    rtmlib marks undecodable keypoints with negative coordinates; they and points outside the crop get conf 0.
    """
    kpts = np.asarray(keypoints, np.float32).reshape(-1, NUM_KEYPOINTS, 2)[0]
    conf = np.clip(np.asarray(scores, np.float32).reshape(-1, NUM_KEYPOINTS)[0], 0.0, 1.0)
    out = np.concatenate([kpts, conf[:, None]], axis=1)
    return outside_image_to_zero(out, height, width)
