"""Turn a camera recording (a MOT track file plus a video or a frame folder) into track entries.

    recording = open_recording("cam1/gt/gt.txt", video="cam1/video.mp4")    # or frames="cam1/img1"
    part, report = ingest("cam1", recording, extractor)    # a one-camera TrackIndex; merge with .extend()

Per track, up to K crops spread over time: the track's rows are cut into K runs of consecutive rows, and each
run gives its best box, by height (relative to the track's tallest) x confidence x visibility. The frames are
read once, in order, keeping only the wanted ones; crops are embedded in batches as they come, so memory grows
with the number of crops, not with the video's length.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from occreid.data.recordings import (
    Tracks,
    folder_frames,
    folder_size,
    read_seqinfo,
    read_tracks,
    video_frames,
    video_info,
)
from occreid.errors import OccreidError
from occreid.retrieval.track_index import TrackIndex, normalise, pool


@dataclass(frozen=True)
class GallerySettings:
    """How track entries are made; every default is here."""

    crops_per_track: int = 8  # K: crops sampled per track
    thumb_height: int = 128  # pixels; crops are stored as JPEGs this tall
    jpeg_quality: int = 85
    batch_size: int = 64  # crops per forward pass
    crop_features: bool = False  # keep each crop's feature too (max-over-crops re-scoring needs them)


@dataclass
class Recording:
    """A track file with where its frames come from, its frame rate (None: unknown) and frame size."""

    tracks: Tracks
    frames: Callable[[set[int]], Iterator[tuple[int, np.ndarray]]]
    fps: float | None
    source: str


@dataclass
class IngestReport:
    tracks: int
    crops: int
    frames_read: int  # frames decoded (a video is decoded up to the last wanted frame)
    clipped: int  # boxes clipped to the frame
    seconds: float


def _seqinfo(*places: Path | None):
    for folder in places:
        if folder is not None and (folder / "seqinfo.ini").is_file():
            return read_seqinfo(folder / "seqinfo.ini")
    return None


def open_recording(
    tracks: str | Path,
    video: str | Path | None = None,
    frames: str | Path | None = None,
    fps: float | None = None,
) -> Recording:
    """Read a track file for a video or a frame folder (exactly one). The frame rate is `fps`, else the one of
    a `seqinfo.ini` beside the tracks or frames (MOT layout), else the video's, else unknown."""
    if (video is None) == (frames is None):
        raise OccreidError("give the recording's frames with exactly one of --video FILE or --frames DIR")
    if fps is not None and fps <= 0:
        raise OccreidError(f"--fps must be > 0, got {fps}")
    tracks = Path(tracks)
    source = Path(video if video is not None else frames)  # type: ignore[arg-type]
    info = _seqinfo(tracks.parent, tracks.parent.parent, source.parent)
    if video is not None:
        vinfo = video_info(source)
        size, rate = (vinfo.width, vinfo.height), vinfo.fps

        def read(wanted: set[int]) -> Iterator[tuple[int, np.ndarray]]:
            return video_frames(source, wanted)
    else:
        if not source.is_dir():
            raise OccreidError(f"--frames {source} is not a folder of frames")
        size, rate, vinfo = folder_size(source), None, None

        def read(wanted: set[int]) -> Iterator[tuple[int, np.ndarray]]:
            return folder_frames(source, wanted)

    if info is not None and info.width and info.height:
        size = (info.width, info.height)
    table = read_tracks(tracks, frame_size=size)
    if vinfo is not None and vinfo.frames and int(table.frame.max()) > vinfo.frames:
        raise OccreidError(
            f"{tracks} refers to frame {int(table.frame.max())} but the video {source} has {vinfo.frames} "
            "frames; give the video the tracks were made from"
        )
    rate = fps or (info.fps if info is not None else None) or rate
    return Recording(tracks=table, frames=read, fps=rate, source=str(source.resolve()))


def sample_crops(tracks: Tracks, k: int) -> list[np.ndarray]:
    """Per track (in `tracks.track_ids()` order), the rows of up to `k` crops spread over its time: the rows
    are split into min(k, rows) runs and each run gives its best box (height / the track's tallest x score x
    visibility; the earliest on ties)."""
    if k < 1:
        raise OccreidError(f"crops per track must be >= 1, got {k}")
    starts = np.flatnonzero(np.r_[True, tracks.track[1:] != tracks.track[:-1]])
    bounds = np.r_[starts, len(tracks)]
    out = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        quality = crop_quality(tracks, np.arange(a, b))
        runs = np.array_split(np.arange(b - a), min(k, b - a))
        out.append(np.asarray([a + run[np.argmax(quality[run])] for run in runs], dtype=np.int64))
    return out


def crop_quality(tracks: Tracks, rows: np.ndarray) -> np.ndarray:
    heights = tracks.boxes[rows, 3]
    return heights / heights.max() * tracks.score[rows] * tracks.visibility[rows]


def _cut(frame: np.ndarray, box: np.ndarray):
    from PIL import Image

    x, y, w, h = (float(v) for v in box)
    x0, y0 = max(0, int(round(x))), max(0, int(round(y)))
    x1, y1 = (
        min(frame.shape[1], max(x0 + 1, int(round(x + w)))),
        min(frame.shape[0], max(y0 + 1, int(round(y + h)))),
    )
    return Image.fromarray(np.ascontiguousarray(frame[y0:y1, x0:x1]))


def _jpeg(crop: Any, settings: GallerySettings) -> bytes:
    from PIL import Image

    height = settings.thumb_height
    width = max(1, round(crop.width * height / crop.height))
    buffer = io.BytesIO()
    crop.resize((width, height), Image.BILINEAR).save(buffer, format="JPEG", quality=settings.jpeg_quality)
    return buffer.getvalue()


def embed_crops(
    recording: Recording, rows: np.ndarray, extractor: Any, settings: GallerySettings
) -> tuple[np.ndarray, list[bytes]]:
    """Features (len(rows), D) float32 and JPEGs of the crops at these track-file rows, reading each wanted
    frame once, in order, and embedding in batches of `settings.batch_size`."""
    tracks = recording.tracks
    by_frame: dict[int, list[int]] = {}
    for position, row in enumerate(rows):
        by_frame.setdefault(int(tracks.frame[row]), []).append(position)
    features: list[Any] = [None] * len(rows)
    jpegs: list[bytes] = [b""] * len(rows)
    pending: list[tuple[int, Any]] = []

    def flush() -> None:
        embedded = extractor([crop for _, crop in pending]).numpy()
        for (position, _), feature in zip(pending, embedded):
            features[position] = feature
        pending.clear()

    for number, frame in recording.frames(set(by_frame)):
        for position in by_frame[number]:
            crop = _cut(frame, tracks.boxes[rows[position]])
            jpegs[position] = _jpeg(crop, settings)
            pending.append((position, crop))
        if len(pending) >= settings.batch_size:
            flush()
    if pending:
        flush()
    return np.stack(features).astype(np.float32), jpegs


def ingest(
    camera: str, recording: Recording, extractor: Any, settings: GallerySettings = GallerySettings()
) -> tuple[TrackIndex, IngestReport]:
    """A one-camera TrackIndex of every track in `recording`, embedded with `extractor` (a FeatureExtractor or
    any callable mapping a list of PIL images to a (B, D) tensor)."""
    started = time.perf_counter()
    tracks = recording.tracks
    chosen = sample_crops(tracks, settings.crops_per_track)
    rows = np.concatenate(chosen)
    features, jpegs = embed_crops(recording, rows, extractor, settings)
    counts = np.asarray([len(c) for c in chosen], dtype=np.int64)
    crop_start = np.r_[0, np.cumsum(counts)].astype(np.int64)
    crop_features = normalise(features)
    ids = np.asarray(tracks.track_ids(), dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, tracks.track[1:] != tracks.track[:-1]])  # rows sorted by track, frame
    first, last = tracks.frame[starts], tracks.frame[np.r_[starts[1:], len(tracks)] - 1]
    fps = recording.fps
    seconds = np.stack([first - 1, last - 1], axis=1) / fps if fps else np.full((len(ids), 2), np.nan)
    best = [int(np.argmax(crop_quality(tracks, c))) for c in chosen]
    part = TrackIndex(
        cameras={camera: {"fps": fps, "tracks": str(tracks.path.resolve()), "source": recording.source}},
        camera_code=np.zeros(len(ids), np.int32),
        track=ids,
        first_frame=first,
        last_frame=last,
        seconds=seconds.astype(np.float64),
        thumb=crop_start[:-1] + np.asarray(best, dtype=np.int64),
        entry_features=pool(crop_features, crop_start).astype(np.float16),
        crop_start=crop_start,
        crop_features=(crop_features if settings.crop_features else crop_features[:0]).astype(np.float16),
        crop_frame=tracks.frame[rows].astype(np.int64),
        crop_box=tracks.boxes[rows].astype(np.float32),
        jpeg_start=np.r_[0, np.cumsum([len(j) for j in jpegs])].astype(np.int64),
        jpegs=np.frombuffer(b"".join(jpegs), dtype=np.uint8).copy(),
    )
    report = IngestReport(
        tracks=len(ids),
        crops=len(rows),
        frames_read=int(tracks.frame.max()),
        clipped=tracks.clipped,
        seconds=time.perf_counter() - started,
    )
    return part, report
