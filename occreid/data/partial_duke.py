"""Partial-Duke, the partial-person dataset of the PGFL-KD paper (section 4.1), generated from DukeMTMC-reID.

The recipe, applied to each of train (bounding_box_train), query and gallery (bounding_box_test) separately:

- n images; floor(n / 2) of them become partial, the other ceil(n / 2) are copied byte for byte;
- of the partial ones, floor(half) keep the upper half of the image (rows 0 .. floor(H / 2) - 1) and the rest
  keep the upper third (rows 0 .. floor(H / 3) - 1); the width is unchanged ("prone to be the upper body");
- which images, and which crop, is decided by sorting the file names by SHA-256 of "<seed>:<split>:<name>":
  the first floor(n / 4) get the half crop, the next ones up to floor(n / 2) the third crop. This needs no
  random generator, so it is the same on every machine and every Python/numpy version.

Output: the DukeMTMC-reID layout with the same file names (cropped JPEGs re-encoded at quality 95, others
copied), plus `partial_duke.csv` with one row per image: path (relative), crop (none/upper_half/upper_third),
orig_height, height. Same input and seed -> byte-identical output. Identities and counts are DukeMTMC-reID's:
702 ids / 16,522 train, 702 / 2,228 query, 1,110 / 17,661 gallery.

    make_partial_duke("data/DukeMTMC-reID", "data/Partial-Duke", seed=0)
"""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from occreid.data.datasets.duke import CROPS, DUKE_DIRS, MANIFEST_NAME, NO_CROP
from occreid.errors import OccreidError
from occreid.utils.files import check_writable_dir

SPLIT_DIRS = ("bounding_box_train", "query", "bounding_box_test")
JPEG_QUALITY = 95


def crop_height(height: int, crop: str) -> int:
    """Rows kept by `crop`: floor(H * num / den), at least 1; H for "none"."""
    if crop == NO_CROP:
        return height
    num, den = CROPS[crop]
    return max(1, height * num // den)


def plan_crops(names: list[str], split: str, seed: int) -> dict[str, str]:
    """file name -> crop for one split: floor(n/4) "upper_half", floor(n/2) - floor(n/4) "upper_third", rest
    "none"."""
    order = sorted(names, key=lambda n: (hashlib.sha256(f"{seed}:{split}:{n}".encode()).hexdigest(), n))
    n_partial = len(order) // 2
    n_half = n_partial // 2
    plan = {}
    for rank, name in enumerate(order):
        plan[name] = "upper_half" if rank < n_half else "upper_third" if rank < n_partial else NO_CROP
    return plan


def make_partial_duke(
    duke_root: str | Path, out_root: str | Path, seed: int = 0, *, progress: bool = True
) -> Path:
    """Write Partial-Duke generated from the DukeMTMC-reID folder `duke_root` into `out_root`; returns it.

    `out_root` must not exist or be empty. The output is written to a temporary folder next to it and renamed
    at the end, so an interrupted run leaves no half-written dataset.
    """
    from PIL import Image
    from tqdm import tqdm

    from occreid.data.datasets.common import find_dataset_dir, list_images, parse_camera_name
    from occreid.data.images import IMAGE_ERRORS, image_error

    source = find_dataset_dir(duke_root, DUKE_DIRS, [[d] for d in SPLIT_DIRS], "make-partial-duke --duke")
    out_root = Path(out_root).expanduser().resolve()
    if out_root.exists() and (not out_root.is_dir() or any(out_root.iterdir())):
        raise OccreidError(
            f"make-partial-duke --out {out_root} already exists and is not empty; pick a new folder"
        )
    if out_root == source or source in out_root.parents:
        raise OccreidError(
            f"make-partial-duke --out {out_root} must not be inside the DukeMTMC-reID folder {source}"
        )
    check_writable_dir(out_root.parent, "make-partial-duke --out")  # a file where its folder should be

    jobs: list[tuple[str, Path, str]] = []  # (relpath, source file, crop)
    for split in SPLIT_DIRS:
        images = list_images(source / split, f"make-partial-duke {split}")
        for path in images:
            parse_camera_name(path, f"make-partial-duke {split}")  # fail early on files the loader can't read
        plan = plan_crops([p.name for p in images], split, seed)
        jobs += [(f"{split}/{p.name}", p, plan[p.name]) for p in images]

    out_root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_root.name}.tmp-", dir=out_root.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the dataset should not be
    try:
        for split in SPLIT_DIRS:
            (tmp / split).mkdir()
        rows = []
        for relpath, src, crop in tqdm(jobs, desc="Partial-Duke", unit="img", disable=not progress):
            dst = tmp / relpath
            try:  # an empty or corrupt file is an error naming it (copied files are only opened, not decoded)
                with Image.open(src) as image:
                    width, height = image.size
                    fmt = image.format or "JPEG"
                    part = None if crop == NO_CROP else image.crop((0, 0, width, crop_height(height, crop)))
                    if part is not None:
                        part.load()
            except IMAGE_ERRORS as exc:
                raise image_error(src, exc) from None
            if part is None:
                shutil.copyfile(src, dst)
            else:
                options = {"quality": JPEG_QUALITY} if fmt == "JPEG" else {}
                part.save(dst, format=fmt, **options)
            rows.append((relpath, crop, height, crop_height(height, crop)))
        with (tmp / MANIFEST_NAME).open("w", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(["path", "crop", "orig_height", "height"])
            writer.writerows(sorted(rows))
        if out_root.exists():
            out_root.rmdir()  # empty, checked above
        os.replace(tmp, out_root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_root
