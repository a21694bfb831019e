"""What an index records about the model that embedded it, so later features can be checked against it."""

from __future__ import annotations

from typing import Any


def index_settings(loaded: Any) -> dict[str, Any]:
    """What must match for two feature sets to be comparable; stored in the index metadata, for `loaded`, an
    occreid.inference.models.InferenceModel. The model is identified by the content hash of its training
    checkpoint (an .onnx file records the one it was exported from), so a checkpoint and its fp32 export are
    the same model; its path is only where it was when the index was built. `feature` is what the deployed
    model computes: always f_G (whatever test feature the config names). `precision` (fp32 / int8) is checked
    on its own (GalleryIndex.precision_problem)."""
    from occreid.inference.models import RESIZE

    return {
        "checkpoint": str(loaded.path.resolve()),
        "checkpoint_sha256": loaded.source_sha256,
        "image_size": list(loaded.image_size),
        "mean": list(loaded.mean),
        "std": list(loaded.std),
        "flip": bool(loaded.flip),
        "resize": RESIZE,
        "feature": "f_G",
        "precision": loaded.precision,
    }
