"""Inference with a trained model: loading it from a checkpoint (occreid.inference.models) and turning images
into features (FeatureExtractor)."""

from occreid.inference.extractor import FeatureExtractor, load_features, save_features

__all__ = ["FeatureExtractor", "load_features", "save_features"]
