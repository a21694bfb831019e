"""The small test-only occluded/partial sets: Occluded-REID, Partial-REID and Partial-iLIDS.

They have no training split (models are trained on Market-1501 or another set) and no camera labels.

THE SINGLE-CAMERA PROTOCOL. Standard ReID evaluation drops, for each query, the gallery images of the same
person seen by the same camera. These sets have no cameras, so every toolkit that reports on them (PVPM,
HOReID, BPBreID, fast-reid, light-reid) gives every query image camid 0 and every gallery image camid 1:
then same-camera filtering removes nothing and each query is matched against all gallery images of its
person. We do the same. If you give both splits the same camid instead, the filter deletes every true match
and Rank-1 collapses to 0; if you skip camids, your numbers will not compare with the papers'. Query images
get `occluded=True`, gallery (whole-body) images `occluded=False`; `train` is empty.

Layouts (the root may be the dataset folder or its parent)::

    Occluded_REID/                                   1,000 query + 1,000 gallery images of 200 people
        occluded_body_images/001/001_01.tif          query   (TIFF; pid = person folder)
        whole_body_images/001/001_01.tif             gallery
    Partial_REID/ (Partial-REID_Dataset/)            300 + 300 images of 60 people
        partial_body_images/001_001.jpg              query: manually cropped partial images
        whole_body_images/001_001.jpg                gallery
        (occluded_body_images/ holds the uncropped originals and is not used by the standard protocol)
    Partial_iLIDS/                                   119 + 119 images of 119 people
        Probe/001.jpg  (or probe/, partial_body_images/, query/)     query
        Gallery/001.jpg (or gallery/, whole_body_images/)            gallery

pid: the name of the person folder when images sit in one, otherwise the leading digits of the file name
(`001_01.tif` -> 1, `001.jpg` -> 1). Reorganised copies with flat `query/` and `gallery/` folders load too.
"""

from __future__ import annotations

import re
from pathlib import Path

from occreid.data.datasets.common import find_dataset_dir, finish, list_images, pick_subdir
from occreid.data.records import ImageRecord, ReidDataset
from occreid.errors import OccreidError

QUERY_CAMID = 0
GALLERY_CAMID = 1
_LEADING_ID = re.compile(r"(\d+)")


def _single_camera_dataset(
    name: str,
    root: str | Path,
    dataset_dirs: tuple[str, ...],
    query_dirs: tuple[str, ...],
    gallery_dirs: tuple[str, ...],
    check_stats: bool,
) -> ReidDataset:
    folder = find_dataset_dir(root, dataset_dirs, [list(query_dirs), list(gallery_dirs)], name)
    query_dir = pick_subdir(folder, query_dirs, name)
    gallery_dir = pick_subdir(folder, gallery_dirs, name)
    query = _records(query_dir, QUERY_CAMID, True, f"{name} query")
    gallery = _records(gallery_dir, GALLERY_CAMID, False, f"{name} gallery")
    return finish(name, folder, [], query, gallery, check_stats)


def _records(split_dir: Path, camid: int, occluded: bool, what: str) -> list[ImageRecord]:
    records = []
    for path in list_images(split_dir, what, recursive=True):
        rel = path.relative_to(split_dir)
        if len(rel.parts) == 2:  # <pid>/<image>
            if not rel.parts[0].isdigit():
                raise OccreidError(
                    f"{what}: person folder {path.parent} must be named by the person id, e.g. 001/"
                )
            pid = int(rel.parts[0])
        elif len(rel.parts) == 1:  # flat: <pid>_<n>.jpg or <pid>.jpg
            match = _LEADING_ID.match(path.name)
            if match is None:
                raise OccreidError(
                    f"{what}: cannot parse the person id from file name {path}; expected a name starting "
                    "with the id, e.g. 001_01.tif or 001.jpg, or a person folder 001/"
                )
            pid = int(match.group(1))
        else:
            raise OccreidError(
                f"{what}: {path} is nested too deep; expected {split_dir}/<pid>/<image> or flat images"
            )
        records.append(ImageRecord(str(path), pid, camid, occluded))
    return records


def load_occluded_reid(root: str | Path, *, check_stats: bool = True) -> ReidDataset:
    """Occluded-REID (Zhuo et al., ICME 2018): test only, single-camera protocol
    (see the module docstring)."""
    return _single_camera_dataset(
        "occluded_reid",
        root,
        ("Occluded_REID", "Occluded-REID", "OccludedREID", "occluded_reid", "Occluded_ReID"),
        ("occluded_body_images", "query"),
        ("whole_body_images", "gallery"),
        check_stats,
    )


def load_partial_reid(root: str | Path, *, check_stats: bool = True) -> ReidDataset:
    """Partial-REID (Zheng et al., ICCV 2015): test only, single-camera protocol;
    query = partial_body_images."""
    return _single_camera_dataset(
        "partial_reid",
        root,
        ("Partial_REID", "Partial-REID_Dataset", "Partial-REID", "PartialREID", "partial_reid"),
        ("partial_body_images", "query"),
        ("whole_body_images", "gallery"),
        check_stats,
    )


def load_partial_ilids(root: str | Path, *, check_stats: bool = True) -> ReidDataset:
    """Partial-iLIDS (Zheng et al., ICCV 2011 / He et al., CVPR 2018): test only, single-camera protocol."""
    return _single_camera_dataset(
        "partial_ilids",
        root,
        ("Partial_iLIDS", "PartialiLIDS", "Partial-iLIDS", "partial_ilids", "partial-ilids"),
        ("Probe", "probe", "partial_body_images", "query"),
        ("Gallery", "gallery", "whole_body_images"),
        check_stats,
    )
