"""What an index records about the model that embedded it, so later features can be checked against it."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def index_settings(checkpoint: str | Path, cfg: Any) -> dict[str, Any]:
    """What must match for two feature sets to be comparable; stored in the index metadata. The model is
    identified by the checkpoint's content hash; its path is only where it was when the index was built.
    `feature` is what the deployed model computes: always f_G (whatever test feature the config names)."""
    from occreid.utils.hashing import file_sha256

    checkpoint = Path(checkpoint)
    return {
        "checkpoint": str(checkpoint.resolve()),
        "checkpoint_sha256": file_sha256(checkpoint) if checkpoint.is_file() else None,
        "image_size": list(cfg.data.image_size),
        "mean": list(cfg.data.mean),
        "std": list(cfg.data.std),
        "flip": bool(cfg.eval.flip),
        "feature": "f_G",
    }
