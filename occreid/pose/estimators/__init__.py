"""Pose estimators behind one small interface (`base.PoseEstimator`), plus importers of precomputed keypoints.

Image-based: `mediapipe` (BlazePose, offline, `pip install 'occreid[pose]'`) and `rtmlib` (RTMPose / ViTPose
from a local ONNX file, or downloaded by rtmlib from a URL where there is a network). Importers: `coco-json`
(HRNet / mmpose results files) and `synthetic` (SynthOcc's ground truth). Each lives in its own module and
imports its optional dependency only when built.
"""

from __future__ import annotations

from pathlib import Path

from occreid.errors import OccreidError
from occreid.pose.estimators.base import PoseEstimator

IMAGE_ESTIMATORS: tuple[str, ...] = ("mediapipe", "rtmlib")
IMPORTERS: tuple[str, ...] = ("coco-json", "synthetic")
ESTIMATOR_NAMES: tuple[str, ...] = IMAGE_ESTIMATORS + IMPORTERS


def build_estimator(name: str, model: str | Path | None = None, device: str = "cpu") -> PoseEstimator:
    """An image-based estimator by name: "mediapipe" (CPU only) or "rtmlib".

    rtmlib's `model` is a local .onnx path, a URL, or None for rtmlib's default model (both downloaded on
    first use); `device` is "cpu" or "cuda". Use the result as a context manager (or call `close()`).
    """
    if name == "mediapipe":
        from occreid.pose.estimators.mediapipe import MediaPipePose

        if model is not None:
            raise OccreidError(
                "--model is for rtmlib; the mediapipe estimator uses the model bundled in its wheel"
            )
        if device != "cpu":
            raise OccreidError(f"--device {device}: mediapipe's pose solution runs on the CPU only; use cpu")
        return MediaPipePose()
    if name == "rtmlib":
        from occreid.pose.estimators.rtmlib import RtmlibPose

        return RtmlibPose(model, device=device)
    if name in IMPORTERS:
        raise OccreidError(f"estimator '{name}' imports keypoints from a file and does not run on images")
    raise OccreidError(f"unknown estimator '{name}'; choose one of {', '.join(ESTIMATOR_NAMES)}")
