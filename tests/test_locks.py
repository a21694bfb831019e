"""File locks: one holder at a time, the refusal names the holder, and a killed holder frees the lock."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from occreid.utils.locks import LockedError, file_lock, lock_path_for

HOLD = """
import sys, time
from occreid.utils.locks import file_lock
with file_lock(sys.argv[1], what="the test folder"):
    print("held", flush=True)
    time.sleep(60)
"""


def _holder(lock: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(lock)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_lock_path_beside_a_file_and_inside_a_folder(tmp_path: Path) -> None:
    assert lock_path_for(tmp_path / "x.npz") == tmp_path / "x.npz.lock"
    assert lock_path_for(tmp_path) == tmp_path / ".lock"


def test_second_holder_is_refused_with_the_first_ones_pid(tmp_path: Path) -> None:
    lock = tmp_path / "run.lock"
    proc = _holder(lock)
    try:
        with pytest.raises(LockedError, match=rf"the run is in use by PID {proc.pid} "):
            with file_lock(lock, what="the run"):
                pass
    finally:
        proc.kill()
        proc.wait()


def test_a_killed_holder_releases_the_lock(tmp_path: Path) -> None:
    lock = tmp_path / "run.lock"
    proc = _holder(lock)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with file_lock(lock, what="the run"):
        assert f"PID {__import__('os').getpid()}" in lock.read_text()
    assert lock.read_text() == ""


def test_waiting_takes_the_lock_once_the_holder_finishes(tmp_path: Path) -> None:
    lock = tmp_path / "index.lock"
    proc = _holder(lock)
    start = time.monotonic()
    try:
        subprocess.Popen(["sh", "-c", f"sleep 0.5; kill {proc.pid}"])
        with file_lock(lock, what="the index", wait_s=30):
            waited = time.monotonic() - start
    finally:
        proc.kill()
        proc.wait()
    assert 0.3 < waited < 30
