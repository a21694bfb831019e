"""Atomic, durable file writes and the checks that an output location is usable before long work starts.

    with atomic_write(Path("index.npz")) as f:    # a temp file beside it, fsync, then one rename
        np.savez(f, ...)

A crash or an exception mid-write leaves the old file (or none) in place, never a truncated or 0-byte one; the
new file gets the permissions of any newly created file (0o666 minus the umask), not mkstemp's owner-only
0o600.
"""

from __future__ import annotations

import errno
import glob
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from occreid.errors import OccreidError

OVERWRITE_HINT = "pass --overwrite to replace it, or choose another path"


def umask() -> int:
    """The process umask (reading it means setting it, so it is set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (POSIX; a no-op where folders cannot be opened, e.g. Windows)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_temp_files(path: str | Path) -> list[Path]:
    """Delete the temp files `atomic_write(path)` leaves when its process is killed mid-write (`<name>*.tmp`
    beside `path`). Call it only where one process writes `path`. Returns what it removed."""
    path = Path(path)
    stale = sorted(path.parent.glob(f"{glob.escape(path.name)}*.tmp")) if path.parent.is_dir() else []
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return stale


@contextmanager
def atomic_write(path: str | Path) -> Iterator[BinaryIO]:
    """A binary file object whose content replaces `path` in one rename when the block ends without an error.
    The temp file (`<name>*.tmp`, same folder) is flushed to disk before the rename and removed on failure."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    except OSError as exc:
        raise OccreidError(f"cannot write {path}: {_reason(exc)}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.chmod(tmp, 0o666 & ~umask())
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:  # a full disk, a quota: the old file (or none) stays, and no temp file
        Path(tmp).unlink(missing_ok=True)
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        kept = "the file there before is unchanged" if path.exists() else "nothing was written"
        raise OccreidError(
            f"cannot write {path}: {_reason(exc)} ({kept}); free some space and run again"
        ) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    """`atomic_write` for a UTF-8 text file."""
    with atomic_write(path) as f:
        f.write(text.encode())


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def check_writable_dir(folder: Path, option: str) -> None:
    """Create `folder` (and its parents) if needed and check a file can be written in it; otherwise an
    OccreidError naming `option`, raised before any work is done."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OccreidError(f"{option} {folder} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # PermissionError, a file where a parent folder should be, a read-only disk
        raise OccreidError(f"{option} {folder}: cannot create this folder ({_reason(exc)})") from None
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise OccreidError(f"{option} {folder}: cannot write in this folder ({_reason(exc)})") from None


def check_output_file(path: Path, option: str, overwrite: bool) -> None:
    """`path` is where a command will write one file: refused if it is a folder, if it exists (unless
    `overwrite`) or if its folder cannot be created or written."""
    path = Path(path)
    if path.is_dir():
        raise OccreidError(f"{option} {path} is a folder; give a file path")
    if path.exists() and not overwrite:
        raise OccreidError(f"{option} {path} already exists; {OVERWRITE_HINT}")
    above = next((p for p in path.parents if p.exists()), None)
    if above is not None and not above.is_dir():
        raise OccreidError(
            f"{option} {path}: {above} is a file, so it cannot hold a folder; choose another path"
        )
    check_writable_dir(path.parent if str(path.parent) else Path("."), option)


PICTURE_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg"}


def check_picture_file(path: Path, option: str, overwrite: bool) -> None:
    """`check_output_file` for a picture, whose name must also end in a format the picture commands write."""
    path = Path(path)
    if path.is_dir():
        raise OccreidError(f"{option} {path} is a folder; give a picture file path")
    if path.suffix.lower() not in PICTURE_FORMATS:
        raise OccreidError(
            f"{option} {path}: give a picture file name ending in {', '.join(PICTURE_FORMATS)}"
        )
    check_output_file(path, option, overwrite)


def picture_format(path: Path) -> str:
    """The format of a picture file by its name (PNG where the name says nothing known)."""
    return PICTURE_FORMATS.get(Path(path).suffix.lower(), "png")
