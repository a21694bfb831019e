"""RTMPose / ViTPose through the rtmlib package (ONNX Runtime), top-down on the whole crop.

A ReID image is already a person box, so there is no detector: the box is the full image, [0, 0, W, H], which
rtmlib enlarges by its usual 1.25 padding and warps to the model's input size.

The model (`--model`) is, first, a local `.onnx` file: the way to run offline, and what you pass after
downloading a model once on a connected machine. It may also be a URL (an `.onnx` or rtmlib's `.zip` of an
`end2end.onnx`), or left out for rtmlib's default body model (`DEFAULT_MODEL_URL`, RTMPose-m 256x192,
COCO-17): rtmlib downloads it on first use into its cache (`$TORCH_HOME/hub/checkpoints`, default
`~/.cache/rtmlib/hub/checkpoints`) and reuses it afterwards. Without a network the download fails with an
OccreidError that says to pass a local path.

The input size is read from the ONNX graph, and the family from its outputs: two outputs (SimCC x/y) are
RTMPose, one (N, 17, h, w) heatmap output is ViTPose. Confidences are the model's scores clipped to [0, 1];
keypoints outside the crop get 0. `device` picks the ONNX Runtime provider: "cpu" or "cuda" (needs the
onnxruntime-gpu build). Crops run one at a time (rtmlib's top-down models take one box per forward pass).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from occreid.errors import OccreidError
from occreid.pose.estimators.base import PoseEstimator, check_image, outside_image_to_zero
from occreid.pose.schema import NUM_KEYPOINTS

# rtmlib's own default body model (`rtmlib.Body.MODE["balanced"]["pose"]`): RTMPose-m, 256 x 192, COCO-17.
DEFAULT_MODEL_URL = (
    "https://download.openmmlab.com/mmpose/v1/projects/rtmposev1/onnx_sdk/"
    "rtmpose-m_simcc-body7_pt-body7_420e-256x192-e48f03d0_20230504.zip"
)
DEVICES = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
LOCAL_MODEL_HINT = (
    "download a COCO-17 body model on a machine with internet, e.g. RTMPose-m 256x192 from "
    f"{DEFAULT_MODEL_URL} (unzip it to get end2end.onnx) or a ViTPose .onnx export, and pass its local path "
    "with --model PATH"
)


def full_image_bbox(image: np.ndarray) -> list[float]:
    """The person box of a ReID crop: the whole image, [x0, y0, x1, y1] = [0, 0, W, H]."""
    return [0.0, 0.0, float(image.shape[1]), float(image.shape[0])]


def is_url(model: str | Path) -> bool:
    return str(model).startswith(("http://", "https://"))


def _import_rtmlib() -> Any:
    try:
        import onnxruntime as ort
        import rtmlib  # noqa: F401
    except ImportError as exc:
        raise OccreidError(
            f"the rtmlib estimator needs rtmlib and onnxruntime: pip install 'occreid[pose]' ({exc})"
        ) from None
    return ort


def download_model(url: str) -> Path:
    """Fetch `url` into rtmlib's cache (no-op when it is there already) and return the local .onnx path."""
    from rtmlib.tools import file as rtmlib_file

    try:
        return Path(rtmlib_file.download_checkpoint(url))
    except Exception as exc:  # URLError, timeouts, HTTP errors, a broken zip: all mean "no usable download"
        raise OccreidError(
            f"rtmlib could not download {url} ({type(exc).__name__}: {exc}); there may be no network here. "
            f"Pass a local model instead: {LOCAL_MODEL_HINT}"
        ) from None


def resolve_model(model: str | Path | None) -> Path:
    """A local .onnx path for `model`: a local file as is, a URL (or None: `DEFAULT_MODEL_URL`) downloaded."""
    if model is None or is_url(model):
        return download_model(DEFAULT_MODEL_URL if model is None else str(model))
    path = Path(model).expanduser()
    if not path.is_file():
        raise OccreidError(f"--model {path}: file not found; {LOCAL_MODEL_HINT}, or give a URL to download")
    if path.suffix.lower() != ".onnx":
        raise OccreidError(f"--model {path}: expected an .onnx file; {LOCAL_MODEL_HINT}")
    return path


class RtmlibPose(PoseEstimator):
    """rtmlib's RTMPose or ViTPose from a local .onnx, a URL or rtmlib's default model; one crop at a time."""

    name = "rtmlib"

    def __init__(self, model: str | Path | None = None, device: str = "cpu"):
        if device not in DEVICES:
            raise OccreidError(f"--device {device}: the rtmlib estimator runs on {' or '.join(DEVICES)}")
        ort = _import_rtmlib()
        if DEVICES[device] not in ort.get_available_providers():
            available = ", ".join(ort.get_available_providers())
            raise OccreidError(
                f"--device {device}: onnxruntime has no {DEVICES[device]} here (available: {available}); "
                "install onnxruntime-gpu for CUDA, or use --device cpu"
            )
        from rtmlib import RTMPose, ViTPose

        path = resolve_model(model)
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
            raise OccreidError(
                f"--model {path}: outputs {[o.shape for o in outputs]} are neither SimCC nor heatmaps"
            )
        del session
        self.model = path
        self.device = device
        cls = RTMPose if self.family == "rtmpose" else ViTPose
        self._model = cls(str(path), model_input_size=self.input_size, backend="onnxruntime", device=device)

    @property
    def settings(self) -> dict[str, Any]:
        import rtmlib

        # The device is left out: CPU and CUDA give the same keypoints up to float rounding, so a store may
        # be resumed on another device.
        return {
            "rtmlib": getattr(rtmlib, "__version__", "unknown"),
            "family": self.family,
            "model": self.model.name,
            "input_size_wh": list(self.input_size),
            "bbox": "full image, padding 1.25",
        }

    def predict_one(self, image: np.ndarray) -> np.ndarray:
        image = check_image(image)
        # RGB in: RTMPose/ViTPose were trained on RGB (mmpose's bgr_to_rgb=True) and rtmlib's mean/std are in
        # RGB order, but rtmlib does not convert OpenCV's BGR itself (rtmlib issue #48), so we pass our RGB
        # as is.
        keypoints, scores = self._model(image, bboxes=[full_image_bbox(image)])
        return decode_rtmlib_output(keypoints, scores, image.shape[0], image.shape[1])

    def predict(self, images: list[np.ndarray]) -> list[np.ndarray]:
        return [self.predict_one(image) for image in images]

    def close(self) -> None:
        self._model = None


def decode_rtmlib_output(keypoints: np.ndarray, scores: np.ndarray, height: int, width: int) -> np.ndarray:
    """rtmlib's (1, 17, 2) keypoints and (1, 17) scores for one box -> our (17, 3) x, y, conf in [0, 1].

    rtmlib marks undecodable keypoints with negative coordinates; they and points outside the crop get conf 0.
    """
    kpts = np.asarray(keypoints, np.float32).reshape(-1, NUM_KEYPOINTS, 2)[0]
    conf = np.clip(np.asarray(scores, np.float32).reshape(-1, NUM_KEYPOINTS)[0], 0.0, 1.0)
    out = np.concatenate([kpts, conf[:, None]], axis=1)
    return outside_image_to_zero(out, height, width)
