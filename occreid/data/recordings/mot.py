"""MOTChallenge files: `seqinfo.ini`, and track files of 9 columns (ground truth) or 10 (a tracker's output).

    info = read_seqinfo("MOT17-02/seqinfo.ini")           # SeqInfo(name, fps, length, width, height, ...)
    tracks = read_tracks("MOT17-02/gt/gt.txt", frame_size=(info.width, info.height))
    tracks.track_ids()                                    # sorted int ids

Columns: frame (from 1), id, left, top, width, height (MOTChallenge pixels start at 1: `Tracks` holds left - 1
and top - 1, from 0, as py-motmetrics reads them), then
- 9 columns (ground truth): flag (0 = ignore), class (1 = pedestrian), visibility in [0, 1];
- 10 columns (detections or a tracker's output): confidence, x, y, z (world coordinates, unused).
Ground-truth rows with flag 0 or another class than pedestrian are skipped. Boxes reaching outside the frame
are clipped to it and counted in `clipped` (boxes wholly outside are dropped and counted too).
"""

from __future__ import annotations

import configparser
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from occreid.errors import OccreidError

PEDESTRIAN = 1


@dataclass(frozen=True)
class SeqInfo:
    """The `[Sequence]` section of a MOTChallenge `seqinfo.ini`; fields it lacks are None."""

    name: str
    fps: float | None
    length: int | None
    width: int | None
    height: int | None
    im_dir: str = "img1"
    im_ext: str = ".jpg"


def read_seqinfo(path: str | Path) -> SeqInfo:
    """Read a `seqinfo.ini`; a malformed file raises OccreidError naming it."""
    path = Path(path)
    parser = configparser.ConfigParser()
    try:
        parser.read_string(path.read_text())
        section = parser["Sequence"]
        number = {k: section.get(k) for k in ("frameRate", "seqLength", "imWidth", "imHeight")}
        return SeqInfo(
            name=section.get("name", path.parent.name),
            fps=float(number["frameRate"]) if number["frameRate"] else None,
            length=int(number["seqLength"]) if number["seqLength"] else None,
            width=int(number["imWidth"]) if number["imWidth"] else None,
            height=int(number["imHeight"]) if number["imHeight"] else None,
            im_dir=section.get("imDir", "img1"),
            im_ext=section.get("imExt", ".jpg"),
        )
    except (OSError, configparser.Error, KeyError, ValueError) as exc:
        raise OccreidError(
            f"cannot read {path} as a MOTChallenge seqinfo.ini ({type(exc).__name__}: {exc}); it needs a "
            "[Sequence] section with frameRate, seqLength, imWidth and imHeight"
        ) from None


def seqinfo_text(info: SeqInfo) -> str:
    """The text of a `seqinfo.ini` for `info`."""
    return (
        f"[Sequence]\nname={info.name}\nimDir={info.im_dir}\nframeRate={info.fps:g}\nseqLength={info.length}\n"
        f"imWidth={info.width}\nimHeight={info.height}\nimExt={info.im_ext}\n"
    )


@dataclass
class Tracks:
    """The rows of a track file that describe people, sorted by (track, frame). Boxes are (left, top, width,
    height) in pixels; `score` is the confidence (10 columns) or 1, `visibility` the ground truth's (9
    columns) or 1."""

    path: Path
    columns: int
    frame: np.ndarray  # (R,) int64, from 1
    track: np.ndarray  # (R,) int64
    boxes: np.ndarray  # (R, 4) float32
    score: np.ndarray  # (R,) float32
    visibility: np.ndarray  # (R,) float32
    clipped: int = 0  # boxes clipped to the frame (or dropped, wholly outside it)

    def __len__(self) -> int:
        return len(self.frame)

    def track_ids(self) -> list[int]:
        return [int(t) for t in np.unique(self.track)]


def _parse(path: Path) -> tuple[np.ndarray, int]:
    """All rows as float64 (R, C), C in {9, 10}; a malformed row raises naming the file and line."""
    rows: list[list[float]] = []
    columns = 0
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise OccreidError(f"cannot read track file {path} ({type(exc).__name__}: {exc})") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.replace("\t", ",").split(",")]
        where = f"{path}, line {number}"
        if len(fields) not in (9, 10):
            raise OccreidError(
                f"{where}: {len(fields)} columns; MOT track files have 9 (frame, id, left, top, width, "
                "height, flag, class, visibility) or 10 (..., confidence, x, y, z)"
            )
        if columns and len(fields) != columns:
            raise OccreidError(f"{where}: {len(fields)} columns where the lines above have {columns}")
        columns = len(fields)
        try:
            values = [float(f) for f in fields]
        except ValueError:
            raise OccreidError(f"{where}: not a number in {line.strip()!r}") from None
        if values[0] < 1 or values[0] != int(values[0]):
            raise OccreidError(f"{where}: frame {fields[0]} must be a whole number from 1")
        if values[4] <= 0 or values[5] <= 0:
            raise OccreidError(f"{where}: box width and height must be > 0, got {fields[4]} x {fields[5]}")
        rows.append(values)
    if not rows:
        raise OccreidError(f"track file {path} holds no rows")
    return np.asarray(rows, dtype=np.float64), columns


def _clip(boxes: np.ndarray, frame_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, int]:
    """Boxes (R, 4) clipped to a (width, height) frame, a mask of the rows that keep some area, and how many
    rows changed."""
    w, h = frame_size
    x0, y0 = np.clip(boxes[:, 0], 0, w), np.clip(boxes[:, 1], 0, h)
    x1, y1 = np.clip(boxes[:, 0] + boxes[:, 2], 0, w), np.clip(boxes[:, 1] + boxes[:, 3], 0, h)
    out = np.stack([x0, y0, x1 - x0, y1 - y0], axis=1)
    keep = (out[:, 2] >= 1) & (out[:, 3] >= 1)
    changed = int(np.any(np.abs(out - boxes) > 1e-6, axis=1).sum())
    return out, keep, changed


def read_tracks(path: str | Path, frame_size: tuple[int, int] | None = None) -> Tracks:
    """Read a MOT track file (9 or 10 columns). `frame_size` (width, height) clips boxes to the frame.

    A file where every id is -1 (detections, not tracks) is refused."""
    path = Path(path)
    if not path.is_file():
        raise OccreidError(f"track file not found: {path}")
    data, columns = _parse(path)
    if np.all(data[:, 1] == -1):
        raise OccreidError(
            f"{path} holds detections only (every id is -1); --tracks needs a tracker's output, one id per "
            "person track (e.g. gt/gt.txt, or run a tracker such as ByteTrack on det/det.txt first)"
        )
    keep = data[:, 1] >= 0
    if columns == 9:
        keep &= (data[:, 6] != 0) & (data[:, 7] == PEDESTRIAN)
        score, visibility = np.ones(len(data)), np.clip(data[:, 8], 0, 1)
    else:
        score, visibility = np.where(data[:, 6] < 0, 1.0, np.clip(data[:, 6], 0, 1)), np.ones(len(data))
    boxes, clipped = data[:, 2:6] - np.array([1.0, 1.0, 0.0, 0.0]), 0
    if frame_size is not None:
        boxes, inside, clipped = _clip(boxes, frame_size)
        keep &= inside
    if not keep.any():
        raise OccreidError(
            f"{path}: no pedestrian rows to index (all are ignored, other classes or off-frame)"
        )
    order = np.lexsort((data[keep, 0], data[keep, 1]))
    return Tracks(
        path=path,
        columns=columns,
        frame=data[keep, 0].astype(np.int64)[order],
        track=data[keep, 1].astype(np.int64)[order],
        boxes=boxes[keep].astype(np.float32)[order],
        score=score[keep].astype(np.float32)[order],
        visibility=visibility[keep].astype(np.float32)[order],
        clipped=clipped,
    )
