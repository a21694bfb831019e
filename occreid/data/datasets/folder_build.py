"""Your own data's rows -> a ReidDataset: names as identities, an automatic split by identity, and the
single-camera protocol for data without camera labels (docs/own-data.md).

A row is (path, person, camid, split, occluded): `person` is the text that names the identity (a folder name,
a CSV cell), `camid` a 0-based camera or None where the data has no camera label.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import NamedTuple

from occreid.data.datasets.common import finish
from occreid.data.records import ImageRecord, ReidDataset
from occreid.errors import OccreidError

SINGLE_CAMERA_FIX = (
    "set data.camids=split (occreid data summary: --camids split) for the single-camera protocol: every "
    "query camera 0, every gallery camera 1 (docs/own-data.md)"
)


class Row(NamedTuple):
    path: str
    person: str
    camid: int | None
    split: str
    occluded: bool | None = None


def identity_map(people: set[str]) -> dict[str, int]:
    """Person names -> integer ids: the numbers themselves when every name is an integer (`0007` -> 7), else
    1..N in sorted order of the names (0 and -1 mean distractor and junk in the Market convention)."""
    try:
        return {name: int(name) for name in people}
    except ValueError:
        return {name: i for i, name in enumerate(sorted(people), start=1)}


def auto_split(rows: list[Row], spec: str, where: str) -> tuple[list[Row], list[str]]:
    """`auto:F`: a fraction F of the identities, the first by sha256 of their names (the same on every
    machine), become query (each one's first image by path) and gallery (its other images); the rest stay
    train. Returns the new rows and the held-out names."""
    if any(r.split != "train" for r in rows):
        raise OccreidError(
            f"folder: data.split={spec} but {where} already has query/gallery images; remove data.split "
            "(or the query/gallery folders or CSV column)"
        )
    people = sorted({r.person for r in rows}, key=lambda n: hashlib.sha256(n.encode()).hexdigest())
    count = round(float(spec.split(":")[1]) * len(people))
    if len(people) < 2 or not 1 <= count < len(people):
        raise OccreidError(
            f"folder: data.split={spec} holds out {count} of the {len(people)} identities in {where}; it "
            "must leave at least one for training and one for testing (choose another fraction)"
        )
    held_out = set(people[:count])
    first: dict[str, str] = {}
    for r in sorted(rows, key=lambda r: r.path):
        if r.person in held_out:
            first.setdefault(r.person, r.path)
    out = [
        r._replace(
            split="train" if r.person not in held_out else "query" if first[r.person] == r.path else "gallery"
        )
        for r in rows
    ]
    return out, sorted(held_out)


def build_dataset(
    root: Path, rows: list[Row], where: str, *, split: str | None = None, camids: str | None = None
) -> ReidDataset:
    """The dataset of `rows` (see the module doc), with `notes` that a run records: the identity names and
    the automatic split."""
    if camids not in (None, "names", "split"):
        raise OccreidError(f"folder: camids must be names or split, got {camids!r}")
    notes: dict = {}
    if split is not None:
        rows, held_out = auto_split(rows, split, where)
        notes.update(split=split, held_out_identities=held_out)
    ids = identity_map({r.person for r in rows})
    if any(str(pid) != name for name, pid in ids.items()):
        notes["identities"] = dict(sorted(ids.items(), key=lambda kv: kv[1]))
    tested = [r for r in rows if r.split != "train"]
    if camids == "split":
        rows = [r._replace(camid=0 if r.split == "query" else 1) if r.split != "train" else r for r in rows]
    elif tested and all(r.camid is None for r in rows):
        raise OccreidError(
            f"folder: {where} has no camera labels, and evaluation drops each query's same-camera gallery "
            f"images; {SINGLE_CAMERA_FIX}, or name cameras as in alice_c2_001.jpg or <person>/<camera>/"
        )
    unlabelled = next((r for r in rows if r.camid is None), None)
    if camids != "split" and unlabelled is not None and any(r.camid is not None for r in rows):
        raise OccreidError(
            f"folder: {unlabelled.path} has no camera label but other images of {where} have one; label "
            f"every image (alice_c2_001.jpg, <person>/<camera>/) or none and {SINGLE_CAMERA_FIX}"
        )
    splits: dict[str, list[ImageRecord]] = {"train": [], "query": [], "gallery": []}
    for r in rows:
        splits[r.split].append(ImageRecord(r.path, ids[r.person], r.camid or 0, r.occluded))
    dataset = finish("folder", root, splits["train"], splits["query"], splits["gallery"], False)
    dataset.notes = notes
    return dataset
