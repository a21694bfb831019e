"""Import keypoints in the COCO keypoint *results* format, the one HRNet, mmpose and most estimators write.

    [{"image_id": 17 or "0001_c1s1_000151_01.jpg", "category_id": 1,
      "keypoints": [x1, y1, c1, ..., x17, y17, c17], "score": 0.93}, ...]

The file may also be a dict holding that list under "annotations" or "results", optionally next to a COCO
"images" list ([{"id": 17, "file_name": "..."}]) that maps integer ids to file names; the "images" list can
also come from a separate COCO file (`images_json`).

Matching a file name to the dataset's relpaths, by path components: an exact relpath wins; otherwise the
candidates are the relpaths with the same file name whose path and the entry's path agree as far as both go
(one is a suffix of the other: "/data/market/query/a.jpg" and "a.jpg" both fit "query/a.jpg"), and the one
sharing the longest path suffix wins. A bare file name thus matches by basename when that basename is unique.
Ties are "ambiguous"; an entry whose folders contradict every dataset image with its file name
("whole_body/001.jpg" against "occluded_body/001.jpg") is "conflicting" and not imported, since it most likely
describes another image. Several detections for one image: the highest "score" wins.

Third values that are all in {0, 1, 2} with some 2 are COCO visibility flags, not scores: 2 (visible) becomes
confidence 1 and 0/1 (unlabelled/occluded) become 0. Coordinates are taken as they are (conventions differ by
at most half a pixel, 1/32 of a feature cell). Given the dataset `root`, keypoints outside their image
([0, W) x [0, H)) get confidence 0, as the image estimators do (`base.outside_image_to_zero`).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from occreid.errors import OccreidError
from occreid.pose.estimators.base import outside_image_to_zero
from occreid.pose.schema import NUM_KEYPOINTS


@dataclass
class CocoImportReport:
    entries: int = 0  # detections in the file
    matched_images: int = 0  # dataset images that got keypoints
    duplicates: int = 0  # detections dropped because a higher-scoring one exists for the same image
    unmatched: list[str] = field(default_factory=list)  # entry names that match no dataset image
    ambiguous: list[str] = field(default_factory=list)  # entries fitting several dataset images equally well
    conflicting: list[str] = field(default_factory=list)  # entries whose folders contradict the dataset's
    missing: list[str] = field(default_factory=list)  # dataset images without any entry ("no pose")
    visibility_flags: bool = False  # third values were COCO flags
    outside_zeroed: int = 0  # keypoints outside their image whose confidence was set to 0

    def summary(self) -> str:
        def examples(items: list[str]) -> str:
            return f" (e.g. {', '.join(items[:3])})" if items else ""

        strip_hint = "; if only the folder layout differs, strip the folders from the names"
        lines = [
            f"{self.entries} detections, {self.matched_images} images matched, {self.duplicates} lower-score "
            "duplicates dropped",
            f"{len(self.unmatched)} entries match no dataset image{examples(self.unmatched)}",
            f"{len(self.ambiguous)} entries with an ambiguous basename{examples(self.ambiguous)}",
            f"{len(self.conflicting)} entries whose folders contradict the dataset image with that name, "
            f"not imported{examples(self.conflicting)}{strip_hint if self.conflicting else ''}",
            f"{len(self.missing)} dataset images without an entry, stored as "
            f"'no pose'{examples(self.missing)}",
        ]
        if self.visibility_flags:
            lines.append("third values read as COCO visibility flags (2 -> conf 1, 0/1 -> conf 0)")
        if self.outside_zeroed:
            lines.append(f"{self.outside_zeroed} keypoints outside their image set to confidence 0")
        return "\n".join(lines)


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise OccreidError(f"COCO keypoint file not found: {path}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise OccreidError(f"{path} is not valid JSON ({exc})") from None


def _id_to_name(images: Any, source: Path) -> dict[int, str]:
    if not isinstance(images, list):
        raise OccreidError(f"{source}: 'images' must be a list of {{'id', 'file_name'}}")
    try:
        return {int(im["id"]): str(im["file_name"]) for im in images}
    except (KeyError, TypeError, ValueError) as exc:
        raise OccreidError(f"{source}: every 'images' entry needs 'id' and 'file_name' ({exc})") from None


class _NameMatcher:
    """Match a file name from the JSON to one dataset relpath (the rule is in the module docstring)."""

    def __init__(self, relpaths: list[str]):
        self.relpaths = set(relpaths)
        self.by_basename: dict[str, list[tuple[str, ...]]] = defaultdict(list)
        for p in relpaths:
            parts = PurePosixPath(p).parts
            self.by_basename[parts[-1]].append(parts)

    def match(self, name: str) -> tuple[str | None, str]:
        """-> (relpath or None, "matched" | "unmatched" | "ambiguous" | "conflicting")."""
        name = name.replace("\\", "/")
        if name in self.relpaths:
            return name, "matched"
        parts = PurePosixPath(name).parts
        candidates = self.by_basename.get(parts[-1], []) if parts else []
        if not candidates:
            return None, "unmatched"
        fitting: list[tuple[int, tuple[str, ...]]] = []
        for cand in candidates:
            common = 0
            while common < min(len(parts), len(cand)) and parts[-1 - common] == cand[-1 - common]:
                common += 1
            if common == min(len(parts), len(cand)):  # one path is a suffix of the other: no contradiction
                fitting.append((common, cand))
        if not fitting:
            return None, "conflicting"
        longest = max(common for common, _ in fitting)
        best = [cand for common, cand in fitting if common == longest]
        if len(best) > 1:
            return None, "ambiguous"
        return "/".join(best[0]), "matched"


def _image_size(root: Path, relpath: str) -> tuple[int, int]:
    """(H, W) of an image file, read from its header."""
    from PIL import Image

    from occreid.data.images import IMAGE_ERRORS, image_error

    try:
        with Image.open(root / relpath) as im:
            return im.height, im.width
    except IMAGE_ERRORS as exc:
        raise image_error(root / relpath, exc) from None


def import_coco_json(
    path: str | Path,
    relpaths: list[str],
    images_json: str | Path | None = None,
    root: str | Path | None = None,
) -> tuple[dict[str, np.ndarray], CocoImportReport]:
    """Read a COCO keypoint results file and match it to the dataset's relpaths.

    Returns (relpath -> (17, 3) float32 x, y, conf for EVERY relpath, images without an entry all-zero) and a
    report of what matched. With `root` (the folder the relpaths are relative to; the CLI always passes it)
    the matched images' sizes are read and keypoints outside them get confidence 0. Raises OccreidError naming
    the file and entry for malformed content.
    """
    path = Path(path)
    data = _read_json(path)
    id_to_name: dict[int, str] = {}
    if isinstance(data, dict):
        if "images" in data:
            id_to_name = _id_to_name(data["images"], path)
        results = data.get("annotations", data.get("results"))
        if results is None:
            raise OccreidError(
                f"{path}: expected a list of detections, or a dict with 'annotations' or 'results'"
            )
    else:
        results = data
    if not isinstance(results, list):
        raise OccreidError(f"{path}: the detections must be a list, got {type(results).__name__}")
    if images_json is not None:
        images_data = _read_json(Path(images_json))
        if not isinstance(images_data, dict) or "images" not in images_data:
            raise OccreidError(f"{images_json}: expected a COCO file with an 'images' list")
        id_to_name.update(_id_to_name(images_data["images"], Path(images_json)))

    parsed: list[tuple[str, np.ndarray, float]] = []
    for i, entry in enumerate(results):
        if not isinstance(entry, dict) or "image_id" not in entry or "keypoints" not in entry:
            raise OccreidError(f"{path}: entry {i} needs 'image_id' and 'keypoints'")
        image_id = entry["image_id"]
        if isinstance(image_id, str) and not image_id.isdigit():
            name = image_id
        else:
            if int(image_id) not in id_to_name:
                raise OccreidError(
                    f"{path}: entry {i} has integer image_id {image_id} but no 'images' list maps it to a "
                    "file name; add the COCO 'images' list to the file or pass the annotation file with "
                    "--images-json"
                )
            name = id_to_name[int(image_id)]
        kpts = np.asarray(entry["keypoints"], dtype=np.float64)
        if kpts.size != NUM_KEYPOINTS * 3:
            raise OccreidError(
                f"{path}: entry {i} ({name}) has {kpts.size} keypoint numbers, expected 51 (17 x 3)"
            )
        score = float(entry.get("score", 1.0))
        parsed.append((name, kpts.reshape(NUM_KEYPOINTS, 3), score))

    report = CocoImportReport(entries=len(parsed))
    third = np.concatenate([k[:, 2] for _, k, _ in parsed]) if parsed else np.zeros(0)
    report.visibility_flags = bool(third.size and np.isin(third, (0, 1, 2)).all() and (third == 2).any())

    matcher = _NameMatcher(relpaths)
    best: dict[str, tuple[float, np.ndarray]] = {}
    for name, kpts, score in parsed:
        relpath, status = matcher.match(name)
        if relpath is None:
            getattr(report, status).append(name)
            continue
        if relpath in best:
            report.duplicates += 1
            if score <= best[relpath][0]:
                continue
        best[relpath] = (score, kpts)

    out: dict[str, np.ndarray] = {}
    for relpath in relpaths:
        if relpath not in best:
            report.missing.append(relpath)
            out[relpath] = np.zeros((NUM_KEYPOINTS, 3), np.float32)
            continue
        kpts = best[relpath][1].astype(np.float32)
        if report.visibility_flags:
            kpts[:, 2] = (kpts[:, 2] == 2).astype(np.float32)
        kpts[:, 2] = np.clip(kpts[:, 2], 0.0, 1.0)
        if root is not None:
            visible = kpts[:, 2] > 0
            kpts = outside_image_to_zero(kpts, *_image_size(Path(root), relpath))
            report.outside_zeroed += int((visible & (kpts[:, 2] == 0)).sum())
        out[relpath] = kpts
    report.matched_images = len(best)
    return out, report
