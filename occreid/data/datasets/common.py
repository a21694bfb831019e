"""Helpers shared by the dataset loaders: finding the dataset folder, listing images, parsing names,
relabelling train identities and checking the published statistics.

Every loader builds its three lists with the ORIGINAL person ids and hands them to `finish`, which checks the
known statistics (on the original ids, so they compare with the papers) and then relabels train to 0..N-1.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from occreid.data.records import ImageRecord, ReidDataset
from occreid.errors import OccreidError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"})

# `0002_c1s1_000451_03.jpg` (Market-1501) and `0005_c2_f0046985.jpg` (DukeMTMC-reID): person id, then camera.
CAMERA_NAME_PATTERN = re.compile(r"(-?\d+)_c(\d+)")
CAMERA_NAME_HELP = "<pid>_c<camera>..., e.g. 0002_c1s1_000451_03.jpg or 0005_c2_f0046985.jpg"

# Published statistics, split -> (identities, images), counted the way our loaders count them: junk images
# (pid -1) are dropped, distractors (pid 0) are kept and count as one identity. Numbers are from Table 1 of
# the PGFL-KD paper except Market-1501's gallery: the paper's 750/19,732 counts every file in
# bounding_box_test (3,819 junk images of pid -1 included, distractor pid 0 not counted as an identity); after
# dropping junk it is 751/15,913 (750 people + the distractor id 0), which torchreid and fast-reid report too.
KNOWN_STATS: dict[str, dict[str, tuple[int, int]]] = {
    "market1501": {"train": (751, 12936), "query": (750, 3368), "gallery": (751, 15913)},
    "dukemtmc": {"train": (702, 16522), "query": (702, 2228), "gallery": (1110, 17661)},
    "occluded_duke": {"train": (702, 15618), "query": (519, 2210), "gallery": (1110, 17661)},
    "partial_duke": {"train": (702, 16522), "query": (702, 2228), "gallery": (1110, 17661)},
    "occluded_reid": {"train": (0, 0), "query": (200, 1000), "gallery": (200, 1000)},
    "partial_reid": {"train": (0, 0), "query": (60, 300), "gallery": (60, 300)},
    "partial_ilids": {"train": (0, 0), "query": (119, 119), "gallery": (119, 119)},
    # The release README: "24143 images of 1299 identities" over all splits (no per-split numbers published).
    "p_dukemtmc": {"all": (1299, 24143)},
}


def find_dataset_dir(
    root: str | Path, names: Sequence[str], required: Sequence[Sequence[str]], what: str
) -> Path:
    """The folder that holds a dataset: `root` itself or `root/<name>` (or `root/<name>/<name>`).

    `required` lists alternatives per needed sub-folder, e.g. [["query"], ["bounding_box_test", "gallery"]];
    a candidate qualifies when one alternative of each exists. Returns the resolved path.
    """
    root = Path(root).expanduser()
    hint = "; a CSV list? set data.dataset=folder" if root.suffix.lower() == ".csv" else ""
    if not root.exists():
        raise OccreidError(
            f"{what}: dataset root {root} does not exist; pass the folder that holds the dataset{hint}"
        )
    if not root.is_dir():
        raise OccreidError(f"{what}: dataset root {root} is not a folder{hint}")
    candidates = [root] + [root / n for n in names] + [root / n / n for n in names]

    def ok(folder: Path) -> bool:
        return all(any((folder / alt).is_dir() for alt in alts) for alts in required)

    for candidate in candidates:
        if candidate.is_dir() and ok(candidate):
            return candidate.resolve()
    needed = ", ".join("|".join(alts) + "/" for alts in required)
    # Name the first missing sub-folder of the most plausible candidate, so the user sees what is wrong.
    best = next((c for c in candidates[1:] if c.is_dir()), root)
    missing = [("|".join(alts)) for alts in required if not any((best / alt).is_dir() for alt in alts)]
    raise OccreidError(
        f"{what}: {best} is missing the folder(s) {', '.join(m + '/' for m in missing)}; expected {needed} "
        f"inside {root} or inside {root}/{names[0] if names else '<dataset>'} (see docs/datasets.md)"
    )


def pick_subdir(folder: Path, alternatives: Sequence[str], what: str) -> Path:
    """The first existing `folder/<alternative>`; OccreidError naming them all if none exists."""
    for alt in alternatives:
        if (folder / alt).is_dir():
            return folder / alt
    raise OccreidError(f"{what}: missing folder {folder}/{'|'.join(alternatives)}")


def list_images(folder: Path, what: str, recursive: bool = False) -> list[Path]:
    """Image files in `folder` (sorted by path); other files such as Thumbs.db are ignored.

    Raises OccreidError naming the folder if it is missing or holds no image.
    """
    if not folder.is_dir():
        raise OccreidError(f"{what}: missing folder {folder}")
    files = folder.rglob("*") if recursive else folder.iterdir()
    images = sorted(p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not images:
        kinds = "/".join(sorted(IMAGE_EXTENSIONS))
        where = "in it or its sub-folders" if recursive else "in it"
        raise OccreidError(f"{what}: folder {folder} holds no images ({kinds}) {where}")
    return images


def parse_camera_name(path: Path, what: str) -> tuple[int, int]:
    """(pid, 0-based camid) from a Market/Duke style file name; OccreidError naming the file otherwise."""
    match = CAMERA_NAME_PATTERN.match(path.name)
    if match is None or int(match.group(2)) < 1:
        raise OccreidError(
            f"{what}: cannot parse person and camera from file name {path}; expected {CAMERA_NAME_HELP}"
        )
    return int(match.group(1)), int(match.group(2)) - 1


def camera_named_records(
    folder: Path,
    what: str,
    occluded: bool | Callable[[Path], bool | None] | None = None,
    drop_junk: bool = True,
) -> list[ImageRecord]:
    """Records of a Market/Duke style folder: pid -1 (junk) dropped, pid 0 (distractors) kept."""
    records = []
    for path in list_images(folder, what):
        pid, camid = parse_camera_name(path, what)
        if drop_junk and pid == -1:
            continue
        flag = occluded(path) if callable(occluded) else occluded
        records.append(ImageRecord(str(path), pid, camid, flag))
    return records


def relabel(records: Iterable[ImageRecord]) -> list[ImageRecord]:
    """Train records with pids mapped to 0..N-1 in increasing order of the original pid."""
    records = list(records)
    mapping = {pid: label for label, pid in enumerate(sorted({r.pid for r in records}))}
    return [dataclasses.replace(r, pid=mapping[r.pid]) for r in records]


def sort_records(records: Iterable[ImageRecord]) -> list[ImageRecord]:
    return sorted(records, key=lambda r: r.path)


def check_known_stats(name: str, root: Path, splits: dict[str, list[ImageRecord]]) -> None:
    """One `warnings.warn` listing every split whose (ids, images) differ from the published numbers."""
    expected = KNOWN_STATS.get(name)
    if expected is None:
        return
    all_records = [r for recs in splits.values() for r in recs]
    mismatches = []
    for split, (want_ids, want_images) in expected.items():
        records = all_records if split == "all" else splits[split]
        found = (len({r.pid for r in records}), len(records))
        if found != (want_ids, want_images):
            mismatches.append(
                f"{split} expected {want_ids} ids/{want_images} images, found {found[0]}/{found[1]}"
            )
    if mismatches:
        warnings.warn(
            f"{name} at {root}: statistics differ from the published ones: {'; '.join(mismatches)}. "
            "Fine for a subset; for the full dataset check the download (load with check_stats=False to "
            "silence).",
            UserWarning,
            stacklevel=2,
        )


def finish(
    name: str,
    root: Path,
    train: list[ImageRecord],
    query: list[ImageRecord],
    gallery: list[ImageRecord],
    check_stats: bool,
) -> ReidDataset:
    """Sort, check the known statistics (on original pids), relabel train and build the ReidDataset."""
    train, query, gallery = sort_records(train), sort_records(query), sort_records(gallery)
    if check_stats:
        check_known_stats(name, root, {"train": train, "query": query, "gallery": gallery})
    return ReidDataset(name=name, root=root, train=relabel(train), query=query, gallery=gallery)
