"""The one atomic write (occreid.utils.files) every writer of a checkpoint, keypoint store, feature file or
index uses: all or nothing, durable, and with the permissions of any new file."""

import os
import stat

import numpy as np
import pytest

from occreid.evaluation import GalleryIndex
from occreid.inference import save_features
from occreid.utils.files import atomic_write, atomic_write_text


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_write(path) as f:
        f.write(b"half")
        raise RuntimeError("disk full")
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["out.bin"]
    with pytest.raises(RuntimeError), atomic_write(tmp_path / "new.bin") as f:
        raise RuntimeError("killed")
    assert not (tmp_path / "new.bin").exists()  # no 0-byte file either


def test_the_file_is_flushed_to_disk_before_the_rename(tmp_path, monkeypatch):
    from occreid.utils import files

    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(files.os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(files.os, "replace", lambda a, b: (events.append("replace"), real_replace(a, b))[1])
    atomic_write_text(tmp_path / "a.txt", "text")
    assert (tmp_path / "a.txt").read_text() == "text" and events.index("fsync") < events.index("replace")


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_every_writer_gives_the_umasks_permissions(tmp_path, mask):
    old = os.umask(mask)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        save_features(tmp_path / "f.npz", np.ones((2, 3), np.float32))
        index = GalleryIndex()
        index.add(np.ones((2, 3), np.float32), ["a.jpg", "b.jpg"])
        index.save(tmp_path / "i.npz")
    finally:
        os.umask(old)
    for name in ("a.txt", "f.npz", "i.npz"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~mask, name
