"""Pose: the COCO-17 keypoint schema, the keypoint store, heatmap rendering and estimators."""
