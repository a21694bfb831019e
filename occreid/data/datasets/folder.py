"""`folder`: your own data, in one of two forms.

1. A folder in Market-1501 layout and naming::

       my_data/
           bounding_box_train/  (or train/)      0001_c1_anything.jpg   -> pid 1, camid 0
           query/                                 0007_c2_anything.jpg
           bounding_box_test/   (or gallery/)     0007_c3_anything.jpg

   File names start with `<pid>_c<camera>` (camera counted from 1; several digits allowed). Missing split
   folders give empty splits, but at least one must exist. pid -1 is junk and dropped; pid 0 is kept.

2. A CSV file, given as the root (`--root my_data/list.csv`) or with `csv=` (`--csv`)::

       path,pid,camid,split,occluded
       cam1/a.jpg,7,0,query,1
       cam2/b.jpg,7,1,gallery,0

   A header row is optional; the columns are path, pid, camid (0-based, used as is), then optional
   split (train/query/gallery; a row without one is a TRAIN image) and occluded (1/0/true/false/empty).
   Relative paths are resolved against the root folder when one is given with `csv=` (`--root images/
   --csv lists/mine.csv`), else against the CSV's folder; that folder is the dataset root (the keypoint
   store keys).

In both forms train pids are relabelled to 0..N-1; query and gallery keep theirs.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from occreid.data.datasets.common import camera_named_records, finish
from occreid.data.records import ImageRecord, ReidDataset
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
    root: str | Path | None, *, check_stats: bool = True, csv: str | Path | None = None
) -> ReidDataset:
    """Your own data: a Market-style folder, or a CSV list (the root itself, or `csv`). See the module doc.

    With `csv`, `root` (may be None) is the folder the CSV's relative paths are resolved against; None: the
    CSV's own folder.
    """
    del check_stats  # nothing published to compare with
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
        return _load_csv(Path(csv).expanduser(), base)
    if root is None:
        raise OccreidError("folder: give the dataset folder or CSV file as --root, or a CSV with --csv")
    root = Path(root).expanduser()
    if root.suffix.lower() == ".csv":
        return _load_csv(root)
    if not root.is_dir():
        raise OccreidError(
            f"folder: {root} is neither a folder nor a .csv file; see docs/datasets.md (folder)"
        )
    folder = root.resolve()
    splits: dict[str, list[ImageRecord]] = {}
    for split, names in FOLDER_SPLIT_DIRS.items():
        found = next((folder / n for n in names if (folder / n).is_dir()), None)
        splits[split] = camera_named_records(found, f"folder {split}") if found is not None else []
    if not any((folder / n).is_dir() for names in FOLDER_SPLIT_DIRS.values() for n in names):
        expected = ", ".join("|".join(n) + "/" for n in FOLDER_SPLIT_DIRS.values())
        raise OccreidError(
            f"folder: {folder} has none of the split folders {expected}; or pass a CSV with --csv"
        )
    return finish("folder", folder, splits["train"], splits["query"], splits["gallery"], False)


def _load_csv(path: Path, base: Path | None = None) -> ReidDataset:
    """Records from the CSV `path`; relative image paths are resolved against `base` (default: its folder)."""
    if not path.is_file():
        raise OccreidError(f"folder: CSV file {path} does not exist")
    base = (base or path.parent).resolve()
    splits: dict[str, list[ImageRecord]] = {"train": [], "query": [], "gallery": []}
    with path.open(newline="", encoding="utf-8-sig") as handle:  # -sig: a byte-order mark (Excel) is no cell
        rows = [row for row in csv.reader(handle) if row and any(cell.strip() for cell in row)]
    if rows and rows[0][0].strip().lower() == "path":
        rows = rows[1:]
        start = 2
    else:
        start = 1
    if not rows:
        raise OccreidError(f"folder: CSV file {path} lists no images; expected rows {CSV_HELP}")
    missing = []
    for line, row in enumerate(rows, start=start):
        cells = [c.strip() for c in row]
        where = f"{path} line {line}"
        if not 3 <= len(cells) <= 5:
            raise OccreidError(f"folder: {where} has {len(cells)} columns; expected {CSV_HELP}")
        try:
            pid, camid = int(cells[1]), int(cells[2])
        except ValueError:
            raise OccreidError(
                f"folder: {where}: pid and camid must be integers, got {cells[1]!r}, {cells[2]!r}"
            ) from None
        split = cells[3].lower() if len(cells) > 3 and cells[3] else "train"
        if split not in splits:
            raise OccreidError(f"folder: {where}: split must be train, query or gallery, got {cells[3]!r}")
        occluded = _parse_bool(cells[4], where) if len(cells) > 4 else None
        image = Path(cells[0]).expanduser()
        image = image if image.is_absolute() else base / image
        if not image.is_file():
            missing.append(f"{image} ({where})")
            continue
        splits[split].append(ImageRecord(str(image), pid, camid, occluded))
    if missing:
        shown = "; ".join(missing[:3]) + (f"; and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise OccreidError(
            f"folder: {len(missing)} image(s) listed in {path} do not exist (relative paths are resolved "
            f"against {base}): {shown}"
        )
    all_paths = [r.path for recs in splits.values() for r in recs]
    root = base
    if not all(_is_under(p, base) for p in all_paths):  # absolute paths elsewhere: their common folder
        root = Path(os.path.commonpath(all_paths))
        root = root.parent if root.is_file() else root
    return finish("folder", root, splits["train"], splits["query"], splits["gallery"], False)


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
