"""Pose estimators behind one small interface (`base.PoseEstimator`), plus importers of precomputed keypoints.

Image-based: `mediapipe` (BlazePose, offline, `pip install 'occreid[pose]'`) and `rtmlib` (RTMPose / ViTPose from
a local ONNX file). Importers: `coco-json` (HRNet / mmpose results files) and `synthetic` (SynthOcc's ground
truth). Each lives in its own module and imports its optional dependency only when built.
"""

from __future__ import annotations

from pathlib import Path

from occreid.errors import OccreidError
from occreid.pose.estimators.base import PoseEstimator

IMAGE_ESTIMATORS: tuple[str, ...] = ("mediapipe", "rtmlib")
IMPORTERS: tuple[str, ...] = ("coco-json", "synthetic")
ESTIMATOR_NAMES: tuple[str, ...] = IMAGE_ESTIMATORS + IMPORTERS


def build_estimator(name: str, model: str | Path | None = None, device: str = "cpu") -> PoseEstimator:
    """An image-based estimator by name: "mediapipe" or "rtmlib" (which needs `model`, a local .onnx)."""
    if name == "mediapipe":
        from occreid.pose.estimators.mediapipe import MediaPipePose

        if model is not None:
            raise OccreidError("--model is for rtmlib; the mediapipe estimator uses the model bundled in its wheel")
        return MediaPipePose()
    if name == "rtmlib":
        from occreid.pose.estimators.rtmlib import RtmlibPose

        return RtmlibPose(model, device=device)
    if name in IMPORTERS:
        raise OccreidError(f"estimator '{name}' imports keypoints from a file and does not run on images")
    raise OccreidError(f"unknown estimator '{name}'; choose one of {', '.join(ESTIMATOR_NAMES)}")
