"""Folders of people, `<root>/<person>/*.jpg`: the folder name is the identity (any text), and a camera,
where there is one, comes from a sub-folder (`<person>/<camera>/*.jpg`) or the file name (`..._c2_...`,
`cam2_...`)."""

from __future__ import annotations

import re
from pathlib import Path

from occreid.data.datasets.common import IMAGE_EXTENSIONS
from occreid.data.datasets.folder_build import Row
from occreid.errors import OccreidError

# A camera in a file name: `c2` or `cam2` (also `cam_2`) between separators or at the start, e.g.
# alice_c2_001.jpg, cam3-0001.jpg, 0001_c1s1_000451.jpg.
CAMERA_IN_NAME = re.compile(r"(?:^|[_\-. ])c(?:am)?[_\-]?(\d+)(?=[^0-9]|$)", re.IGNORECASE)


def holds_people(folder: Path) -> bool:
    """Whether `folder` holds person folders (sub-folders and no images of its own)."""
    entries = list(folder.iterdir())
    has_images = any(p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS for p in entries)
    return not has_images and any(p.is_dir() for p in entries)


def person_rows(folder: Path, split: str, what: str) -> list[tuple[Row, str | None]]:
    """The images of `<folder>/<person>/` (directly or in one level of camera sub-folders), each with its
    camera label (the sub-folder's name or the number in the file name; None where there is none)."""
    out = []
    for person in sorted(p for p in folder.iterdir() if p.is_dir()):
        for path in sorted(person.rglob("*")):
            if not (path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS):
                continue
            parts = path.relative_to(person).parts
            if len(parts) > 2:
                raise OccreidError(
                    f"{what}: {path} is {len(parts) - 1} folders below its person folder {person}; expected "
                    "<person>/*.jpg or <person>/<camera>/*.jpg"
                )
            match = CAMERA_IN_NAME.search(path.stem)
            label = parts[0] if len(parts) == 2 else (match.group(1) if match else None)
            out.append((Row(str(path), person.name, None, split), label))
    if not out:
        raise OccreidError(f"{what}: the person folders in {folder} hold no images; expected <person>/*.jpg")
    return out


def label_cameras(rows: list[tuple[Row, str | None]]) -> tuple[list[Row], dict[str, int]]:
    """Camera labels -> 0-based camids, in sorted order of the labels (numerically where all are numbers), the
    same over every split; and the map. A row without a label keeps its camid."""
    labels = {label for _, label in rows if label is not None}
    numeric = all(label.isdigit() for label in labels)
    ordered = sorted(labels, key=lambda x: (int(x), x) if numeric else (0, x))
    cameras = {label: i for i, label in enumerate(ordered)}
    return [row if label is None else row._replace(camid=cameras[label]) for row, label in rows], cameras
