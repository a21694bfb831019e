"""The splits a training run reads, with their keypoints, checked before any work starts."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np

from occreid.config import Config
from occreid.data.datasets import DATASETS, load_dataset
from occreid.data.images import raise_unreadable, unreadable_images
from occreid.data.records import ImageRecord, ReidDataset
from occreid.errors import OccreidError
from occreid.pose.store import DEFAULT_STORE_NAME, KeypointStore
from occreid.utils.distributed import DistInfo, all_gather_objects


def keypoints_for(
    dataset: ReidDataset, records: list[ImageRecord], store_path: str | None, allow_missing: bool = False
) -> list[np.ndarray]:
    """(17, 3) keypoints per record from the dataset's keypoint store (default `<root>/keypoints.npz`).
    Images the store lacks are an error, or with `allow_missing` "no pose" (all confidences 0)."""
    path = Path(store_path) if store_path else dataset.root / DEFAULT_STORE_NAME
    store = KeypointStore.load(path)
    relpaths = [dataset.relpath(r) for r in records]
    missing = store.check_coverage(relpaths, allow_missing=allow_missing, source=str(path))
    if missing:
        print(
            f"warning: {path} lacks {missing} of {len(relpaths)} images; they train/test with no pose "
            "(data.allow_missing_keypoints=true)",
            flush=True,
        )
    return [store[p] for p in relpaths]


def load_train_set(cfg: Config) -> ReidDataset:
    """The dataset `cfg.data` names, read with its options (data.split, data.camids) where given."""
    data = cfg.data
    if not data.root:
        raise OccreidError("data.root is empty: set it to your images, e.g. --set data.root=data/mine")
    options = {key: getattr(data, key) for key in ("split", "camids") if getattr(data, key) is not None}
    accepted = inspect.signature(DATASETS[data.dataset].loader).parameters if data.dataset in DATASETS else {}
    for key, value in options.items():
        if key not in accepted:
            taking = [name for name, d in DATASETS.items() if key in inspect.signature(d.loader).parameters]
            raise OccreidError(
                f"data.{key}={value}: dataset {data.dataset} takes no such option (only {', '.join(taking)} "
                f"do); remove data.{key}"
            )
    return load_dataset(data.dataset, data.root, **options)


def load_test_split(cfg: Config, train_set: ReidDataset | None = None) -> ReidDataset:
    if cfg.data.test_dataset is None:
        return train_set if train_set is not None else load_train_set(cfg)
    return load_dataset(cfg.data.test_dataset, cfg.data.test_root or cfg.data.root)


def check_test_split(test_set: ReidDataset, what: str) -> None:
    """`what` (a command) needs query and gallery images: an OccreidError saying how to get them otherwise."""
    if not test_set.query or not test_set.gallery:
        raise OccreidError(
            f"{what}: dataset {test_set.name} at {test_set.root} has {len(test_set.query)} query and "
            f"{len(test_set.gallery)} gallery images; give both (query/ and gallery/ folders, a CSV split "
            "column, or data.split=auto:0.2 when training) or evaluate on another set with --dataset/--root"
        )


def check_split_images(
    *datasets: ReidDataset,
    splits: tuple[str, ...] = ("train", "query", "gallery"),
    info: DistInfo | None = None,
) -> None:
    """Every image training and evaluation will read can be decoded (occreid.data.images). With several
    processes (`info`) each decodes every world_size-th image and all raise the same error, so none waits
    alone in a later collective."""
    info = info or DistInfo()
    seen: set[str] = set()
    for ds in datasets:
        for split in splits:
            records = [r for r in getattr(ds, split) if r.path not in seen]
            seen.update(r.path for r in records)
            if not records:
                continue
            what = f"{ds.name} {split}"
            share = [r.path for r in records[info.rank :: info.world_size]]
            mine = unreadable_images(share, what, progress=info.is_main)
            bad = [b for part in all_gather_objects(mine, info) for b in part]
            raise_unreadable(bad, len(records), what)


def test_keypoints(
    cfg: Config, test_set: ReidDataset, needed: bool
) -> tuple[list[np.ndarray] | None, list[np.ndarray] | None]:
    """Query and gallery keypoints where the method's test feature needs them
    (`BatchNeeds.test_keypoints`)."""
    if not needed:
        return None, None
    store = cfg.data.keypoints if cfg.data.test_dataset is None else cfg.data.test_keypoints
    allow = cfg.data.allow_missing_keypoints
    return keypoints_for(test_set, test_set.query, store, allow), keypoints_for(
        test_set, test_set.gallery, store, allow
    )
