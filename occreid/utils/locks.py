"""Operating-system file locks that die with their process.

`flock` locks are released by the kernel when the holder exits, SIGKILL included, so a crashed writer never
leaves a lock behind; the lock file itself may stay and is harmless. The holder writes its PID and command
into the lock file, so a refusal can name it. POSIX only (Linux and macOS), like `fcntl`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from occreid.errors import OccreidError


class LockedError(OccreidError):
    """Another live process holds the lock."""


def lock_path_for(path: str | Path) -> Path:
    """The lock file that guards `path`: `<path>.lock` beside it (a folder's lock is `<folder>/.lock`)."""
    path = Path(path)
    return path / ".lock" if path.is_dir() else path.with_name(path.name + ".lock")


def _holder(handle: int) -> str:
    os.lseek(handle, 0, os.SEEK_SET)
    text = os.read(handle, 512).decode("utf-8", "replace").strip()
    return text or "another process"


def _take(handle: int, *, wait_s: float) -> bool:
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)


@contextlib.contextmanager
def file_lock(lock_file: str | Path, *, what: str, wait_s: float = 0.0) -> Iterator[None]:
    """Hold an exclusive lock on `lock_file` for the `with` block.

    Waits up to `wait_s` seconds for another holder to finish, then raises `LockedError`, one line naming
    `what` is locked and the holder's PID and command. Re-entering from the same process is not supported.
    """
    lock_file = Path(lock_file)
    try:
        handle = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:  # a read-only folder, a missing one
        raise OccreidError(f"cannot lock {what}: {lock_file}: {exc.strerror or exc}") from None
    try:
        if not _take(handle, wait_s=wait_s):
            raise LockedError(
                f"{what} is in use by {_holder(handle)} (lock {lock_file}); wait for it to finish, or stop it"
            )
        os.ftruncate(handle, 0)
        os.lseek(handle, 0, os.SEEK_SET)
        os.write(handle, f"PID {os.getpid()} ({' '.join(sys.argv)[:200]})".encode())
        try:
            yield
        finally:
            os.ftruncate(handle, 0)
            fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        os.close(handle)
