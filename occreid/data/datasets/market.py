"""Market-1501 and the built-in SynthOcc set, which is written in Market-1501's layout and naming.

Layout (the root may be `Market-1501-v15.09.15/` itself or the folder that contains it)::

    Market-1501-v15.09.15/
        bounding_box_train/0002_c1s1_000451_03.jpg   train, 751 ids / 12,936 images
        query/0001_c1s1_001051_00.jpg                  query, 750 ids / 3,368 images
        bounding_box_test/0000_c1s1_000151_01.jpg      gallery, 751 ids / 15,913 images (see below)

The name starts with `<pid>_c<camera>`; camid = camera - 1 (6 cameras). pid -1 marks junk gallery images
(badly cropped boxes); they are dropped, as in every ReID toolkit and in the official evaluation. pid 0 marks
distractors (background boxes that match nobody); they stay in the gallery as identity 0. Train pids are
relabelled to 0..750; query and gallery keep the original pids so they match each other.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from occreid.data.datasets.common import camera_named_records, find_dataset_dir, finish
from occreid.data.records import ImageRecord, ReidDataset
from occreid.errors import OccreidError

MARKET_DIRS = ("Market-1501-v15.09.15", "Market-1501", "market1501", "Market1501")
SPLIT_DIRS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}


def load_market1501(root: str | Path, *, check_stats: bool = True) -> ReidDataset:
    """Market-1501 (Zheng et al., ICCV 2015) from `root` (the dataset folder or its parent)."""
    folder = find_dataset_dir(root, MARKET_DIRS, [[d] for d in SPLIT_DIRS.values()], "market1501")
    splits = {s: camera_named_records(folder / d, f"market1501 {s}") for s, d in SPLIT_DIRS.items()}
    return finish("market1501", folder, splits["train"], splits["query"], splits["gallery"], check_stats)


ANNOTATIONS_NAME = "annotations.json"
SYNTHOCC_MARKER = "synthocc.json"  # written last by `occreid synth`: its presence marks a complete dataset


def load_synthocc(root: str | Path, *, check_stats: bool = True) -> ReidDataset:
    """SynthOcc, occreid's synthetic occluded dataset, in Market-1501 layout and naming.

    `<root>/synthocc.json` must exist: the generator writes it last, so without it the folder is a run that
    was interrupted (or is still running) and is refused. `<root>/annotations.json` (relpath ->
    {"occluded": bool, "occluder_type": str | None, ...}), when present, sets each record's `occluded` flag
    and `occluder_type` (see `_read_occlusion_labels`); images it does not list get None. There are no
    published statistics to check.
    """
    del check_stats  # nothing published to compare with
    folder = find_dataset_dir(root, ("synthocc",), [[d] for d in SPLIT_DIRS.values()], "synthocc")
    if not (folder / SYNTHOCC_MARKER).is_file():
        from occreid.data.synthocc.generate import STARTED_MARKER

        if (folder / STARTED_MARKER).is_file() or (
            folder / ANNOTATIONS_NAME
        ).is_file():  # SynthOcc's own files
            raise OccreidError(
                f"synthocc: {folder} has no {SYNTHOCC_MARKER}, which `occreid synth` writes last, so the "
                "dataset is incomplete (an interrupted or running generation); re-run `occreid synth --out "
                f"{folder} --overwrite`"
            )
        raise OccreidError(
            f"synthocc: {folder} has no {SYNTHOCC_MARKER}, so `occreid synth` did not write it: if it is a "
            "real dataset in Market-1501 layout, name it, e.g. data.dataset=market1501 (see `occreid data "
            "list`); to render SynthOcc, give `occreid synth --out` an empty folder"
        )
    labels = _read_occlusion_labels(folder / ANNOTATIONS_NAME)

    def occluded(path: Path) -> bool | None:
        return labels.get(path.relative_to(folder).as_posix(), (None, None))[0]

    def with_type(record: ImageRecord) -> ImageRecord:
        occluder_type = labels.get(Path(record.path).relative_to(folder).as_posix(), (None, None))[1]
        return dataclasses.replace(record, occluder_type=occluder_type)

    splits = {
        s: [with_type(r) for r in camera_named_records(folder / d, f"synthocc {s}", occluded)]
        for s, d in SPLIT_DIRS.items()
    }
    return finish("synthocc", folder, splits["train"], splits["query"], splits["gallery"], False)


def _read_occlusion_labels(path: Path) -> dict[str, tuple[bool | None, str | None]]:
    """relpath -> (occluded, occluder type) from SynthOcc's annotations.json. The type is the annotation's
    "occluder_type", "none" for an image annotated as not occluded, and None for a partial crop (occluded by
    the frame, not by an object) or where the annotation does not say."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise OccreidError(f"{path} is not valid JSON ({exc}); regenerate it or delete it") from None
    if not isinstance(data, dict):
        raise OccreidError(f'{path} must map image paths to objects like {{"occluded": true}}')
    labels: dict[str, tuple[bool | None, str | None]] = {}
    for relpath, entry in data.items():
        entry = entry if isinstance(entry, dict) else {}
        value, kind = entry.get("occluded"), entry.get("occluder_type")
        if value is not None and not isinstance(value, bool):
            raise OccreidError(f'{path}: "occluded" of {relpath} must be true or false, got {value!r}')
        if kind is not None and not isinstance(kind, str):
            raise OccreidError(f'{path}: "occluder_type" of {relpath} must be a name or null, got {kind!r}')
        if kind is None and value is False and not entry.get("partial"):
            kind = "none"
        labels[relpath] = (value, kind)
    return labels
