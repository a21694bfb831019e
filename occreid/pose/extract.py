"""Run a pose estimator once over a dataset and cache the keypoints in a `KeypointStore`.

Resumable: images already in the store are skipped, progress is saved atomically every `save_every` images and
whenever the run stops (error or Ctrl-C), so an interruption loses at most the current batch.

    estimator = build_estimator("mediapipe")
    summary = extract_keypoints(estimator, root, dataset_relpaths(dataset), root / "keypoints.npz")
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from occreid.data.records import ReidDataset
from occreid.errors import OccreidError
from occreid.pose.estimators.base import PoseEstimator, has_pose
from occreid.pose.store import KeypointStore

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@dataclass
class ExtractSummary:
    out: Path
    total: int  # images asked for
    skipped: int  # already in the store (resume)
    processed: int  # run through the estimator now
    no_person: int  # of `processed`, images where no person was found
    no_person_total: int  # of all `total` images in the store

    def __str__(self) -> str:
        return (
            f"{self.total} images: {self.processed} estimated now, {self.skipped} already in {self.out}; "
            f"no person detected in {self.no_person} of the new and {self.no_person_total} of all "
            f"{self.total} ({100.0 * self.no_person_total / max(self.total, 1):.1f}%)"
        )


def dataset_relpaths(dataset: ReidDataset) -> list[str]:
    """Every image of the dataset once (train, query, gallery), relative to its root, sorted."""
    return sorted({dataset.relpath(r) for r in dataset.train + dataset.query + dataset.gallery})


def folder_relpaths(root: str | Path) -> list[str]:
    """Every image file under `root` (recursively), relative to it, sorted."""
    root = Path(root)
    if not root.is_dir():
        raise OccreidError(f"--images {root}: not a folder")
    paths = sorted(
        p.relative_to(root).as_posix() for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS
    )
    if not paths:
        raise OccreidError(f"--images {root}: no image files ({', '.join(IMAGE_EXTENSIONS)}) found")
    return paths


def read_rgb(path: str | Path) -> np.ndarray:
    """An image file as an RGB uint8 array (H, W, 3); OccreidError naming the file if it cannot be read."""
    from occreid.data.images import read_image

    return np.asarray(read_image(path))


def open_store_for(estimator_name: str, settings: dict, out: Path, overwrite: bool) -> KeypointStore:
    """The store to resume into: the existing file if it came from the same estimator and settings."""
    if out.exists() and not overwrite:
        store = KeypointStore.load(out)
        if store.estimator != estimator_name or store.settings != settings:
            raise OccreidError(
                f"{out} holds keypoints from estimator '{store.estimator}' with settings {store.settings}, "
                f"not '{estimator_name}' with {settings}; pass --overwrite to replace it or --out to write "
                "elsewhere"
            )
        return store
    return KeypointStore(estimator=estimator_name, settings=dict(settings))


def extract_keypoints(
    estimator: PoseEstimator,
    root: str | Path,
    relpaths: Sequence[str],
    out: str | Path,
    batch_size: int = 16,
    save_every: int = 500,
    overwrite: bool = False,
    progress: bool = True,
) -> ExtractSummary:
    """Estimate keypoints for `relpaths` (relative to `root`) into the store at `out`, resuming if it
    exists."""
    from tqdm import tqdm

    if batch_size < 1:
        raise OccreidError(f"--batch-size must be >= 1, got {batch_size}")
    root, out = Path(root), Path(out)
    store = open_store_for(estimator.name, estimator.settings, out, overwrite)
    todo = [p for p in relpaths if p not in store]
    skipped = len(relpaths) - len(todo)
    no_person = unsaved = 0
    bar = tqdm(total=len(todo), desc=f"pose ({estimator.name})", unit="img", disable=not progress)
    try:
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            images = [read_rgb(root / p) for p in batch]
            for relpath, kpts in zip(batch, estimator.predict(images)):
                store.add(relpath, kpts)
                no_person += not has_pose(kpts)
            unsaved += len(batch)
            bar.update(len(batch))
            if unsaved >= save_every:
                store.save(out)
                unsaved = 0
    finally:
        bar.close()
        if unsaved or not out.exists():
            store.save(out)
    no_person_total = sum(not has_pose(store[p]) for p in relpaths)
    return ExtractSummary(out, len(relpaths), skipped, len(todo), no_person, no_person_total)
