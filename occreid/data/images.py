"""Reading image files, with the one error message every reader gives for a missing or unreadable file.

image = read_image("data/market1501/query/0001_c1s1_001051_00.jpg")   # PIL RGB image
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from occreid.errors import OccreidError

# What PIL raises on an empty, truncated or non-image file (UnidentifiedImageError is an OSError), and on an
# image over its decompression-bomb limit (Image.MAX_IMAGE_PIXELS; DecompressionBombError is no OSError).
IMAGE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def image_error(path: str | Path, exc: BaseException) -> OccreidError:
    """The OccreidError for `path` that could not be opened or decoded (`exc`, one of IMAGE_ERRORS)."""
    if isinstance(exc, FileNotFoundError):
        return OccreidError(
            f"image not found: {path}; check data.root (the dataset folder) and that the file was not moved"
        )
    if isinstance(exc, Image.DecompressionBombError):
        return OccreidError(
            f"cannot read image {path}: {_bomb_text(exc)}; PIL refuses images this large (a possible "
            "decompression bomb); shrink or remove the file"
        )
    return OccreidError(
        f"cannot read image {path} ({type(exc).__name__}: {exc}); the file is corrupt or not an image, "
        f"re-download it or remove it from the dataset"
    )


EXIF_ORIENTATION = 0x0112


def read_image(path: str | Path) -> Any:
    """Open an image with PIL as RGB, turned upright by its EXIF orientation tag (as a phone photo is shown);
    an unreadable or corrupt file raises OccreidError naming it."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as img:
            if img.getexif().get(EXIF_ORIENTATION, 1) != 1:
                return ImageOps.exif_transpose(img).convert("RGB")
            return img.convert("RGB")
    except IMAGE_ERRORS as exc:
        raise image_error(path, exc) from None


def _bomb_text(exc: BaseException) -> str:
    text = str(exc).split(" could be")[0].strip()  # "Image size (N pixels) exceeds limit of M pixels"
    return text[0].lower() + text[1:] if text else "over the pixel limit"


def _problem(path: str) -> str | None:
    try:
        with Image.open(path) as img:
            img.load()  # decodes the whole file: a truncated JPEG fails only here
    except IMAGE_ERRORS as exc:
        if isinstance(exc, FileNotFoundError):
            return "not found"
        if isinstance(exc, Image.DecompressionBombError):
            return _bomb_text(exc)
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
    return None


def check_images(paths: Sequence[str | Path], what: str, workers: int = 8, progress: bool = True) -> None:
    """Decode every image of `paths` (a split, `what`) before long work starts; if any cannot be read, one
    OccreidError with their count and up to three examples."""
    raise_unreadable(unreadable_images(paths, what, workers, progress), len(paths), what)


def unreadable_images(
    paths: Sequence[str | Path], what: str, workers: int = 8, progress: bool = True
) -> list[tuple[str, str]]:
    """(path, why) of each image of `paths` that cannot be decoded. Threads: PIL decodes without holding the
    GIL."""
    from concurrent.futures import ThreadPoolExecutor

    from occreid.utils.progress import progress as progress_bar

    paths = [str(p) for p in paths]
    bad: list[tuple[str, str]] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        bar = progress_bar(
            total=len(paths),
            desc=f"checking {what} images",
            unit="img",
            enabled=progress and len(paths) > 2000,
        )
        for path, problem in zip(paths, pool.map(_problem, paths, chunksize=64)):
            bar.update(1)
            if problem is not None:
                bad.append((path, problem))
        bar.close()
    return bad


def raise_unreadable(bad: Sequence[tuple[str, str]], total: int, what: str) -> None:
    """The OccreidError of `check_images` where `bad` (from `unreadable_images`) is not empty."""
    if bad:
        examples = "; ".join(f"{p} ({why})" for p, why in bad[:3])
        raise OccreidError(
            f"{len(bad)} of {total} {what} images cannot be read, e.g. {examples}; re-download or "
            "remove them (found before any work started)"
        )
