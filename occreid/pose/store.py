"""One keypoint file per dataset root: image path (relative to the root) -> (17, 3) array of x, y, confidence
in original-image pixels, plus the estimator's name and settings.

Stored as a `.npz` with arrays `paths` (N,) str, `keypoints` (N, 17, 3) float32 and `meta` (a JSON string).
Writing is atomic and durable (occreid.utils.files.atomic_write).
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from occreid.errors import OccreidError, npz_problem
from occreid.pose.schema import NUM_KEYPOINTS
from occreid.utils.files import atomic_write

DEFAULT_STORE_NAME = "keypoints.npz"


@dataclass
class KeypointStore:
    keypoints: dict[str, np.ndarray] = field(default_factory=dict)  # relpath -> (17, 3) float32
    estimator: str = "unknown"
    settings: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.keypoints)

    def __contains__(self, relpath: str) -> bool:
        return relpath in self.keypoints

    def __getitem__(self, relpath: str) -> np.ndarray:
        return self.keypoints[relpath]

    def add(self, relpath: str, keypoints: np.ndarray) -> None:
        array = np.asarray(keypoints, dtype=np.float32)
        if array.shape != (NUM_KEYPOINTS, 3):
            raise ValueError(f"keypoints for {relpath} must have shape (17, 3), got {array.shape}")
        self.keypoints[relpath] = array

    def update(self, items: Mapping[str, np.ndarray]) -> None:
        for relpath, kpts in items.items():
            self.add(relpath, kpts)

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        paths = sorted(self.keypoints)
        array = (
            np.stack([self.keypoints[p] for p in paths]).astype(np.float32)
            if paths
            else np.zeros((0, NUM_KEYPOINTS, 3), np.float32)
        )
        meta = json.dumps({"estimator": self.estimator, "settings": self.settings})
        with atomic_write(path) as f:
            np.savez(f, paths=np.array(paths, dtype=str), keypoints=array, meta=np.array(meta))

    @classmethod
    def load(cls, path: str | Path) -> KeypointStore:
        path = Path(path)
        if not path.is_file():
            raise OccreidError(
                f"keypoint file not found: {path}; run `occreid pose extract` for this dataset first"
            )
        try:
            with np.load(path, allow_pickle=False) as data:
                paths, array, meta = data["paths"], data["keypoints"], json.loads(str(data["meta"]))
        except (OSError, ValueError, KeyError, json.JSONDecodeError, EOFError, zipfile.BadZipFile) as exc:
            raise OccreidError(
                f"{path} is not an occreid keypoint file ({npz_problem(exc)}); re-create it with "
                "`occreid pose extract`"
            ) from None
        if array.ndim != 3 or array.shape[1:] != (NUM_KEYPOINTS, 3) or len(paths) != len(array):
            raise OccreidError(f"{path}: keypoints must be (N, 17, 3) with N paths, got {array.shape}")
        if array.dtype.kind not in "fiu":
            raise OccreidError(f"{path}: keypoints must be numbers, got {array.dtype}")
        bad = ~np.isfinite(array.astype(np.float64)).all(axis=(1, 2))
        if bad.any():
            examples = ", ".join(str(p) for p in paths[bad][:3])
            raise OccreidError(
                f"{path}: {int(bad.sum())} of {len(paths)} images have NaN or infinite keypoints, e.g. "
                f"{examples}; a store marks a missing keypoint with confidence 0, never NaN: fix the "
                "estimator output or re-run `occreid pose extract --overwrite`"
            )
        store = cls(estimator=meta.get("estimator", "unknown"), settings=meta.get("settings", {}))
        store.keypoints = {str(p): a for p, a in zip(paths, array.astype(np.float32))}
        return store

    def check_coverage(self, relpaths: Iterable[str], allow_missing: bool = False, source: str = "") -> int:
        """Check every image has keypoints. Missing ones raise, or with `allow_missing` get a "no pose"
        entry (all confidences 0). Returns the number of missing images."""
        missing = [p for p in relpaths if p not in self.keypoints]
        if missing and not allow_missing:
            examples = ", ".join(missing[:3])
            raise OccreidError(
                f"keypoint file {source or '(in memory)'} lacks {len(missing)} image(s), e.g. {examples}; "
                "run `occreid pose extract` (it resumes), or set data.allow_missing_keypoints=true to treat "
                "them as 'no pose'"
            )
        for p in missing:
            self.keypoints[p] = np.zeros((NUM_KEYPOINTS, 3), np.float32)
        return len(missing)
