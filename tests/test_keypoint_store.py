import os
import stat
from pathlib import Path

import numpy as np
import pytest

from occreid.errors import OccreidError
from occreid.pose.store import KeypointStore


def make_store(n=5):
    rng = np.random.default_rng(0)
    store = KeypointStore(estimator="mediapipe", settings={"input_height": 256})
    for i in range(n):
        store.add(f"query/{i:04d}_c1.jpg", rng.random((17, 3)).astype(np.float32))
    return store


def test_round_trip(tmp_path):
    store = make_store()
    store.add("train/empty.jpg", np.zeros((17, 3)))
    store.save(tmp_path / "k.npz")
    back = KeypointStore.load(tmp_path / "k.npz")
    assert back.estimator == "mediapipe" and back.settings == {"input_height": 256}
    assert sorted(back.keypoints) == sorted(store.keypoints)
    for p in store.keypoints:
        np.testing.assert_array_equal(back[p], store[p])
        assert back[p].dtype == np.float32
    assert (back["train/empty.jpg"] == 0).all()


def test_empty_store_round_trip(tmp_path):
    KeypointStore(estimator="x").save(tmp_path / "k.npz")
    assert len(KeypointStore.load(tmp_path / "k.npz")) == 0


def test_add_rejects_wrong_shape():
    with pytest.raises(ValueError, match=r"\(17, 3\)"):
        KeypointStore().add("a.jpg", np.zeros((33, 3)))


def test_failed_save_leaves_the_old_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "k.npz"
    old = make_store(3)
    old.save(path)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        make_store(5).save(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.npz"]  # no temporary file left behind
    monkeypatch.undo()
    assert len(KeypointStore.load(path)) == 3


def test_coverage_error_names_count_and_examples():
    store = make_store(2)
    wanted = [f"query/{i:04d}_c1.jpg" for i in range(6)]
    with pytest.raises(OccreidError) as err:
        store.check_coverage(wanted, source="data/k.npz")
    message = str(err.value)
    assert "data/k.npz" in message and "lacks 4 image(s)" in message
    assert "query/0002_c1.jpg" in message and "occreid pose extract" in message


def test_coverage_allow_missing_adds_no_pose_entries():
    store = make_store(2)
    wanted = [f"query/{i:04d}_c1.jpg" for i in range(5)]
    assert store.check_coverage(wanted, allow_missing=True) == 3
    assert len(store) == 5
    assert (store["query/0004_c1.jpg"] == 0).all()
    assert store.check_coverage(wanted) == 0


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(OccreidError, match="not found.*pose extract"):
        KeypointStore.load(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(OccreidError, match="bad.npz is not an occreid keypoint file"):
        KeypointStore.load(bad)
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, paths=np.array(["a.jpg"]), keypoints=np.zeros((1, 33, 3)), meta=np.array("{}"))
    with pytest.raises(OccreidError, match=r"wrong.npz.*\(N, 17, 3\)"):
        KeypointStore.load(wrong)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_saved_file_gets_normal_permissions(tmp_path, umask, mode):
    """Not the 0o600 of the temporary file: what any new file gets under the umask (also when replacing)."""
    old = os.umask(umask)
    try:
        make_store().save(tmp_path / "k.npz")
        assert stat.S_IMODE(os.stat(tmp_path / "k.npz").st_mode) == mode
        make_store(2).save(tmp_path / "k.npz")  # replacing an existing store
        assert stat.S_IMODE(os.stat(tmp_path / "k.npz").st_mode) == mode
    finally:
        os.umask(old)
    assert os.umask(old) == old  # save() left the process umask as it was


def test_save_syncs_the_data_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.fstat(fd).st_size))
        return real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", Path(dst).name))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    make_store().save(tmp_path / "k.npz")
    kinds = [kind for kind, _ in events]
    assert kinds[:2] == ["fsync", "replace"] and events[1][1] == "k.npz"
    assert events[0][1] == os.path.getsize(tmp_path / "k.npz")  # the whole file was written when synced
