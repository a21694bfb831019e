"""`folder`: your own data, in one of three forms (docs/own-data.md).

1. A folder in Market-1501 layout and naming::

       my_data/
           bounding_box_train/  (or train/)      0001_c1_anything.jpg   -> pid 1, camid 0
           query/                                 0007_c2_anything.jpg
           bounding_box_test/   (or gallery/)     0007_c3_anything.jpg

   File names start with `<pid>_c<camera>` (camera counted from 1; several digits allowed). Missing split
   folders give empty splits, but at least one must exist. pid -1 is junk and dropped; pid 0 is kept.

2. Folders of people: `<root>/<person>/*.jpg`, the folder name is the identity (any text; names are mapped
   to 1..N in sorted order and the map is recorded in a run's dataset.json). A camera comes from a
   sub-folder (`<person>/<camera>/*.jpg`) or the file name (`alice_c2_001.jpg`, `cam2_001.jpg`). With
   `train/`, `query/`, `gallery/` folders each may hold person folders; without them everything is train,
   and `split="auto:0.2"` holds out a fifth of the identities (folder_build.auto_split).

3. A CSV file, given as the root (`--root my_data/list.csv`) or with `csv=` (`--csv`)::

       path,pid,camid,split,occluded
       cam1/a.jpg,7,0,query,1
       cam2/b.jpg,7,1,gallery,0

   A header row is optional; the columns are path, pid (a number or a name), camid (0-based, used as is;
   empty: no camera), then optional
   split (train/query/gallery; a row without one is a TRAIN image) and occluded (1/0/true/false/empty).
   Relative paths are resolved against the root folder when one is given with `csv=` (`--root images/
   --csv lists/mine.csv`), else against the CSV's folder; that folder is the dataset root (the keypoint
   store keys).

In every form train pids are relabelled to 0..N-1; query and gallery keep theirs. Data without camera labels
needs `camids="split"` (the single-camera protocol) to be evaluated.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from occreid.data.datasets.common import camera_named_records
from occreid.data.datasets.folder_build import Row, build_dataset
from occreid.data.datasets.folder_people import holds_people, label_cameras, person_rows
from occreid.data.records import ReidDataset
from occreid.errors import OccreidError

FOLDER_SPLIT_DIRS = {
    "train": ("bounding_box_train", "train"),
    "query": ("query",),
    "gallery": ("bounding_box_test", "gallery"),
}
CSV_HELP = "path,pid,camid[,split[,occluded]] with split in train/query/gallery"
_TRUE = {"1", "true", "yes", "y"}
_FALSE = {"0", "false", "no", "n"}


def load_folder(
    root: str | Path | None,
    *,
    check_stats: bool = True,
    csv: str | Path | None = None,
    split: str | None = None,
    camids: str | None = None,
) -> ReidDataset:
    """Your own data: a Market-style folder, folders of people, or a CSV list (the root itself, or `csv`).
    See the module doc and docs/own-data.md.

    With `csv`, `root` (may be None) is the folder the CSV's relative paths are resolved against; None: the
    CSV's own folder. `split`: "auto:F" holds out a fraction F of the identities as query and gallery;
    `camids`: "split" is the single-camera protocol (occreid.data.datasets.folder_build).
    """
    del check_stats  # nothing published to compare with
    options = {"split": split, "camids": camids}
    if csv is not None:
        base = None
        if root is not None:
            base = Path(root).expanduser()
            if not base.is_dir():
                raise OccreidError(
                    f"folder: --root {base} is not a folder; with --csv, --root is the folder the CSV's "
                    "relative paths are resolved against (leave it out to resolve them against the CSV's "
                    "folder)"
                )
        return _load_csv(Path(csv).expanduser(), base, **options)
    if root is None or not str(root):
        raise OccreidError(
            "folder: give the dataset folder or CSV file as --root (data.root), or a CSV with --csv"
        )
    root = Path(root).expanduser()
    if root.suffix.lower() == ".csv":
        return _load_csv(root, **options)
    if not root.is_dir():
        raise OccreidError(
            f"folder: {root} is neither a folder nor a .csv file; see docs/own-data.md for the layouts"
        )
    folder = root.resolve()
    found = {
        s: next((folder / n for n in names if (folder / n).is_dir()), None)
        for s, names in FOLDER_SPLIT_DIRS.items()
    }
    if not any(found.values()):
        _check_people_root(folder)
        found = {"train": folder}
    labelled: list[tuple[Row, str | None]] = []
    for name, where in found.items():
        if where is None:
            continue
        if holds_people(where):
            labelled += person_rows(where, name, f"folder {name}")
        else:
            for r in camera_named_records(where, f"folder {name}"):
                labelled.append((Row(r.path, str(r.pid), r.camid, name), None))
    rows, _ = label_cameras(labelled)
    return build_dataset(folder, rows, str(folder), **options)


def _check_people_root(folder: Path) -> None:
    """A root without split folders must hold person folders, and not a dataset one level deeper."""
    expected = ", ".join("|".join(n) + "/" for n in FOLDER_SPLIT_DIRS.values())
    split_names = {n for names in FOLDER_SPLIT_DIRS.values() for n in names}
    deeper = next(
        (p for p in sorted(folder.iterdir()) if p.is_dir() and split_names & {c.name for c in p.iterdir()}),
        None,
    )
    if deeper is not None:
        raise OccreidError(
            f"folder: {folder} has none of the split folders {expected} but {deeper} has: give that as "
            "--root (data.root); or pass a CSV with --csv"
        )
    if not holds_people(folder):
        raise OccreidError(
            f"folder: {folder} has neither person folders (<person>/*.jpg) nor the split folders "
            f"{expected}; or pass a CSV with --csv (docs/own-data.md)"
        )


def _load_csv(path: Path, base: Path | None = None, **options: str | None) -> ReidDataset:
    """Records from the CSV `path`; relative image paths are resolved against `base` (default: its folder)."""
    if not path.is_file():
        raise OccreidError(f"folder: CSV file {path} does not exist")
    base = (base or path.parent).resolve()
    with path.open(newline="", encoding="utf-8-sig") as handle:  # -sig: a byte-order mark (Excel) is no cell
        rows = [row for row in csv.reader(handle) if row and any(cell.strip() for cell in row)]
    if rows and rows[0][0].strip().lower() == "path":
        rows = rows[1:]
        start = 2
    else:
        start = 1
    if not rows:
        raise OccreidError(f"folder: CSV file {path} lists no images; expected rows {CSV_HELP}")
    missing, records = [], []
    for line, row in enumerate(rows, start=start):
        record = _csv_row([c.strip() for c in row], f"{path} line {line}", base)
        if not Path(record.path).is_file():
            missing.append(f"{record.path} ({path} line {line})")
            continue
        records.append(record)
    if missing:
        shown = "; ".join(missing[:3]) + (f"; and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise OccreidError(
            f"folder: {len(missing)} image(s) listed in {path} do not exist (relative paths are resolved "
            f"against {base}): {shown}"
        )
    all_paths = [r.path for r in records]
    root = base
    if not all(_is_under(p, base) for p in all_paths):  # absolute paths elsewhere: their common folder
        root = Path(os.path.commonpath(all_paths))
        root = root.parent if root.is_file() else root
    return build_dataset(root, records, str(path), **options)


def _csv_row(cells: list[str], where: str, base: Path) -> Row:
    """One CSV row: path, person (a number or a name), camid (0-based, or empty: none), split, occluded."""
    if not 3 <= len(cells) <= 5:
        raise OccreidError(f"folder: {where} has {len(cells)} columns; expected {CSV_HELP}")
    if not cells[1]:
        raise OccreidError(f"folder: {where}: the pid (second column) is empty; give a number or a name")
    try:
        camid = int(cells[2]) if cells[2] else None
    except ValueError:
        raise OccreidError(
            f"folder: {where}: camid must be an integer (or empty: no camera), got {cells[2]!r}"
        ) from None
    split = cells[3].lower() if len(cells) > 3 and cells[3] else "train"
    if split not in ("train", "query", "gallery"):
        raise OccreidError(f"folder: {where}: split must be train, query or gallery, got {cells[3]!r}")
    occluded = _parse_bool(cells[4], where) if len(cells) > 4 else None
    image = Path(cells[0]).expanduser()
    return Row(str(image if image.is_absolute() else base / image), cells[1], camid, split, occluded)


def _parse_bool(cell: str, where: str) -> bool | None:
    value = cell.lower()
    if value == "":
        return None
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise OccreidError(f"folder: {where}: occluded must be 1/0/true/false or empty, got {cell!r}")


def _is_under(path: str, base: Path) -> bool:
    try:
        Path(path).relative_to(base)
        return True
    except ValueError:
        return False
