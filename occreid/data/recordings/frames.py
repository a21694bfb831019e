"""Frames of a recording, in order: from a folder of numbered images (`img1/000001.jpg`, ...) or from a video
decoded by PyAV (the `video` extra; no OpenCV). Only the frames asked for are converted to arrays, and a video
is decoded once from start to end, with no seeking, so memory does not grow with its length.

    for number, rgb in video_frames("cam1/video.mp4", wanted={1, 5, 9}):   # (H, W, 3) uint8, frames from 1
        ...
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from occreid.errors import OccreidError

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: float | None
    frames: int | None  # as the container states it; None when unknown


def _av():
    try:
        import av
    except ImportError:
        raise OccreidError(
            'reading video needs PyAV: pip install -e ".[video]" in a clone of occreid'
        ) from None
    return av


def _open(path: Path):
    av = _av()
    if not path.is_file():
        raise OccreidError(f"video not found: {path}")
    try:
        container = av.open(str(path))
        if not container.streams.video:
            container.close()
            raise OccreidError(f"{path} has no video stream; give a video file or --frames DIR")
        return container
    except av.FFmpegError as exc:
        raise OccreidError(f"cannot decode video {path} ({exc}); is it a complete video file?") from None


def video_info(path: str | Path) -> VideoInfo:
    """Size, frame rate and frame count of a video's first video stream."""
    path = Path(path)
    container = _open(path)
    with container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        return VideoInfo(
            width=int(stream.codec_context.width),
            height=int(stream.codec_context.height),
            fps=float(rate) if rate else None,
            frames=int(stream.frames) or None,
        )


def video_frames(path: str | Path, wanted: set[int]) -> Iterator[tuple[int, np.ndarray]]:
    """(frame number from 1, RGB array) of each wanted frame, decoding the video once in order. A wanted frame
    beyond the video's end, or a decoding failure, raises OccreidError."""
    path = Path(path)
    av = _av()
    last = max(wanted) if wanted else 0
    number = 0
    container = _open(path)
    with container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for frame in container.decode(stream):
                number += 1
                if number in wanted:
                    yield number, frame.to_ndarray(format="rgb24")
                if number >= last:
                    return
        except av.FFmpegError as exc:
            raise OccreidError(f"cannot decode video {path} at frame {number + 1} ({exc})") from None
    if number < last:
        raise OccreidError(
            f"the track file refers to frame {last} but the video {path} ends at frame {number}; give the "
            "video the tracks were made from"
        )


def frame_file(folder: Path, number: int, suffix: str | None = None) -> Path:
    """The image of frame `number` in a MOT image folder (`000001.jpg`, ...), whichever suffix it has."""
    for ext in (suffix,) if suffix else FRAME_SUFFIXES:
        path = folder / f"{number:06d}{ext}"
        if path.is_file():
            return path
    raise OccreidError(
        f"frame {number} is not in {folder} (no {number:06d}{suffix or '.jpg'}); frames are numbered from "
        "000001, and the track file must match this folder"
    )


def folder_frames(folder: str | Path, wanted: set[int]) -> Iterator[tuple[int, np.ndarray]]:
    """(frame number, RGB array) of each wanted frame read from `folder`, in order."""
    from occreid.data.images import read_image

    folder = Path(folder)
    if not folder.is_dir():
        raise OccreidError(f"frame folder not found: {folder}")
    for number in sorted(wanted):
        yield number, np.asarray(read_image(frame_file(folder, number)))


def folder_size(folder: str | Path) -> tuple[int, int]:
    """(width, height) of the first frame in a MOT image folder."""
    from PIL import Image

    first = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in FRAME_SUFFIXES)
    if not first:
        raise OccreidError(f"no frames ({', '.join(FRAME_SUFFIXES)}) in {folder}")
    with Image.open(first[0]) as image:
        return image.size
