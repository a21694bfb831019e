"""DukeMTMC-reID and the datasets derived from it: Occluded-Duke, Partial-Duke and P-DukeMTMC-reID.

DukeMTMC-reID, Occluded-Duke and Partial-Duke share one layout and naming (8 cameras, no junk images)::

    DukeMTMC-reID/  (or Occluded_Duke/, or a Partial-Duke folder made by `occreid data make-partial-duke`)
        bounding_box_train/0005_c2_f0046985.jpg
        query/0005_c5_f0051341.jpg
        bounding_box_test/0002_c1_f0044158.jpg

The name starts with `<pid>_c<camera>`; camid = camera - 1. Train pids are relabelled to 0..N-1.

Occlusion flags: Occluded-Duke's query is occluded by construction (Miao et al., ICCV 2019), so query
records get `occluded=True` and the rest None (10 % of its gallery is occluded but not marked).
Partial-Duke's manifest says which images were cropped (`occluded=True`) and which are whole (False).
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from occreid.data.datasets.common import (
    CAMERA_NAME_PATTERN,
    camera_named_records,
    find_dataset_dir,
    finish,
    list_images,
)
from occreid.data.records import ImageRecord, ReidDataset
from occreid.errors import OccreidError

SPLIT_DIRS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
DUKE_DIRS = ("DukeMTMC-reID", "DukeMTMC-reid", "dukemtmc-reid", "DukeMTMC")
OCCLUDED_DUKE_DIRS = (
    "Occluded_Duke",
    "Occluded-Duke",
    "occluded_duke",
    "Occluded_DukeMTMC",
    "Occluded-DukeMTMC",
)
MANIFEST_NAME = "partial_duke.csv"  # written by occreid.data.partial_duke.make_partial_duke
# crop name -> kept fraction of the height (numerator, denominator)
CROPS: dict[str, tuple[int, int]] = {"upper_half": (1, 2), "upper_third": (1, 3)}
NO_CROP = "none"
PARTIAL_DUKE_DIRS = ("Partial-Duke", "Partial_Duke", "partial_duke", "PartialDuke")
P_DUKE_DIRS = ("P-DukeMTMC-reID", "P-DukeMTMC-reid", "P_DukeMTMC", "p_dukemtmc", "P-DukeMTMC")


def _load_duke_layout(
    name: str,
    folder: Path,
    check_stats: bool,
    occluded: dict[str, bool | Callable[[Path], bool]] | None = None,
) -> ReidDataset:
    splits = {
        s: camera_named_records(folder / d, f"{name} {s}", (occluded or {}).get(s))
        for s, d in SPLIT_DIRS.items()
    }
    return finish(name, folder, splits["train"], splits["query"], splits["gallery"], check_stats)


def _required() -> list[list[str]]:
    return [[d] for d in SPLIT_DIRS.values()]


def load_dukemtmc(root: str | Path, *, check_stats: bool = True) -> ReidDataset:
    """DukeMTMC-reID (Zheng et al., ICCV 2017) from `root` (the `DukeMTMC-reID` folder or its parent)."""
    folder = find_dataset_dir(root, DUKE_DIRS, _required(), "dukemtmc")
    return _load_duke_layout("dukemtmc", folder, check_stats)


def load_occluded_duke(root: str | Path, *, check_stats: bool = True) -> ReidDataset:
    """Occluded-Duke (Miao et al., ICCV 2019): its own split of DukeMTMC-reID; every query is occluded."""
    folder = find_dataset_dir(root, OCCLUDED_DUKE_DIRS, _required(), "occluded_duke")
    return _load_duke_layout("occluded_duke", folder, check_stats, occluded={"query": True})


def load_partial_duke(root: str | Path, *, check_stats: bool = True) -> ReidDataset:
    """Partial-Duke (PGFL-KD paper, section 4.1) as written by `occreid.data.partial_duke.make_partial_duke`.

    The manifest `<root>/partial_duke.csv` sets `occluded=True` on cropped images and False on whole ones.
    """
    folder = find_dataset_dir(root, PARTIAL_DUKE_DIRS, _required(), "partial_duke")
    manifest_path = folder / MANIFEST_NAME
    if not manifest_path.is_file():
        raise OccreidError(
            f"partial_duke: {manifest_path} not found; generate Partial-Duke with `occreid data "
            f"make-partial-duke --duke DIR --out {folder}`, or load a plain Duke-layout folder as `dukemtmc`"
        )
    crops = read_manifest(manifest_path)

    def occluded(path: Path) -> bool:
        relpath = path.relative_to(folder).as_posix()
        if relpath not in crops:
            raise OccreidError(
                f"partial_duke: {relpath} is not listed in {manifest_path}; regenerate the dataset"
            )
        return crops[relpath] != "none"

    flags = {s: occluded for s in SPLIT_DIRS}
    return _load_duke_layout("partial_duke", folder, check_stats, occluded=flags)


def load_p_dukemtmc(
    root: str | Path, *, check_stats: bool = True, camids: Literal["split", "names"] = "split"
) -> ReidDataset:
    """P-DukeMTMC-reID (Zhuo et al., ICME 2018)::

        P-DukeMTMC-reID/
            train/whole_body_images/<pid>/*.jpg      train (both kinds)
            train/occluded_body_images/<pid>/*.jpg
            test/occluded_body_images/<pid>/*.jpg    query, occluded=True
            test/whole_body_images/<pid>/*.jpg       gallery, occluded=False

    pid is the `<pid>` folder name. camids: "split" (default) is the convention of PVPM and BPBreID behind the
    published P-Duke numbers: occluded images camid 0, whole-body images camid 1 (train too), so same-camera
    filtering removes nothing. "names" instead parses DukeMTMC names (`0005_c2_f0046985.jpg` -> camid 1) so
    same-camera gallery images are excluded as in DukeMTMC-reID; numbers made that way do not compare with the
    papers'.
    """
    if camids not in ("split", "names"):
        raise OccreidError(f"p_dukemtmc: camids must be split or names, got {camids!r}")
    folder = find_dataset_dir(
        root,
        P_DUKE_DIRS,
        [["train/whole_body_images"], ["test/occluded_body_images"], ["test/whole_body_images"]],
        "p_dukemtmc",
    )
    groups = {  # (split, occluded) -> folder
        ("train", False): folder / "train" / "whole_body_images",
        ("train", True): folder / "train" / "occluded_body_images",
        ("query", True): folder / "test" / "occluded_body_images",
        ("gallery", False): folder / "test" / "whole_body_images",
    }
    files = {}
    for (split, occ), path in groups.items():
        if split == "train" and occ and not path.is_dir():
            files[(split, occ)] = []  # a train set without occluded images is still usable
            continue
        files[(split, occ)] = list_images(path, f"p_dukemtmc {split}", recursive=True)

    splits: dict[str, list[ImageRecord]] = {"train": [], "query": [], "gallery": []}
    for (split, occ), paths in files.items():
        for path in paths:
            pid = _folder_pid(path, groups[(split, occ)], "p_dukemtmc")
            if camids == "names":
                match = CAMERA_NAME_PATTERN.match(path.name)
                if match is None or int(match.group(2)) < 1:
                    raise OccreidError(
                        f"p_dukemtmc: cannot parse the camera from {path} (camids='names' expects "
                        "<pid>_c<camera>_..., e.g. 0005_c2_f0046985.jpg); use camids='split'"
                    )
                camid = int(match.group(2)) - 1
            else:
                camid = 0 if occ else 1
            splits[split].append(ImageRecord(str(path), pid, camid, occ))
    return finish("p_dukemtmc", folder, splits["train"], splits["query"], splits["gallery"], check_stats)


def _folder_pid(path: Path, split_dir: Path, what: str) -> int:
    """pid from the `<pid>/` folder an image sits in (directly under the split folder)."""
    rel = path.relative_to(split_dir)
    if len(rel.parts) != 2 or not rel.parts[0].isdigit():
        raise OccreidError(
            f"{what}: {path} must sit in a person folder named by its id, e.g. {split_dir}/0005/"
        )
    return int(rel.parts[0])


def read_manifest(path: str | Path) -> dict[str, str]:
    """relpath -> crop ("none", "upper_half" or "upper_third") from a Partial-Duke manifest."""
    path = Path(path)
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"path", "crop"} <= set(reader.fieldnames):
            raise OccreidError(f"{path} is not a Partial-Duke manifest (needs the columns path,crop)")
        crops = {}
        for line, row in enumerate(reader, start=2):
            if row["crop"] not in (NO_CROP, *CROPS):
                raise OccreidError(f"{path} line {line}: unknown crop {row['crop']!r}")
            crops[row["path"]] = row["crop"]
    return crops
