"""Inference with a trained model: loading it from a checkpoint or an exported .onnx file
(occreid.inference.models.load_inference_model), running .onnx files on ONNX Runtime (onnx_model), int8
quantisation (quantize), evaluating a deployed model (evaluate) and turning images into features
(FeatureExtractor)."""

from occreid.inference.extractor import FeatureExtractor, load_features, save_features

__all__ = ["FeatureExtractor", "load_features", "save_features"]
