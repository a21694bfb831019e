"""Reading image files, with the one error message every reader gives for a missing or unreadable file.

    image = read_image("data/market1501/query/0001_c1s1_001051_00.jpg")   # PIL RGB image
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from occreid.errors import OccreidError

# What PIL raises on an empty, truncated or non-image file (UnidentifiedImageError is an OSError).
IMAGE_ERRORS = (OSError, ValueError, SyntaxError)


def image_error(path: str | Path, exc: BaseException) -> OccreidError:
    """The OccreidError for `path` that could not be opened or decoded (`exc`, one of IMAGE_ERRORS)."""
    if isinstance(exc, FileNotFoundError):
        return OccreidError(
            f"image not found: {path}; check data.root (the dataset folder) and that the file was not moved"
        )
    return OccreidError(
        f"cannot read image {path} ({type(exc).__name__}: {exc}); the file is corrupt or not an image, "
        f"re-download it or remove it from the dataset"
    )


def read_image(path: str | Path) -> Any:
    """Open an image with PIL as RGB; an unreadable or corrupt file raises OccreidError naming it."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except IMAGE_ERRORS as exc:
        raise image_error(path, exc) from None
