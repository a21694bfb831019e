"""The gallery of tracks (index format 3): pooling, crop sampling, search (own camera left out, max-over-crops
re-scoring) against brute force, the file round trip, and `occreid index build|add --tracks` / `search` as a
user runs them, with their one-line errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from recordings_fixtures import SMALL, make_track_index, run_cli
from typer.testing import CliRunner

from occreid.cli import app
from occreid.data.recordings import Tracks
from occreid.errors import OccreidError
from occreid.retrieval import (
    TrackIndex,
    UnknownTrackError,
    load_index,
    pool,
    sample_crops,
    search_by_track,
)


def synthetic_index(crops_per_entry, cameras, dim=16, seed=0, crop_features=True) -> TrackIndex:
    """A TrackIndex of random crop features: entry i has crops_per_entry[i] crops and camera cameras[i]; the
    crop features kept or not."""
    rng = np.random.default_rng(seed)
    n, m = len(crops_per_entry), int(sum(crops_per_entry))
    names = sorted(set(cameras))
    crop_start = np.r_[0, np.cumsum(crops_per_entry)].astype(np.int64)
    features = rng.standard_normal((m, dim)).astype(np.float32)
    crops = (features / np.linalg.norm(features, axis=1, keepdims=True)).astype(np.float16)
    return TrackIndex(
        cameras={name: {"fps": 10.0} for name in names},
        camera_code=np.asarray([names.index(c) for c in cameras], np.int32),
        track=np.arange(1, n + 1, dtype=np.int64),
        first_frame=np.ones(n, np.int64),
        last_frame=np.full(n, 11, np.int64),
        seconds=np.tile([0.0, 1.0], (n, 1)),
        thumb=crop_start[:-1].copy(),
        entry_features=pool(crops, crop_start).astype(np.float16),
        crop_start=crop_start,
        crop_features=crops if crop_features else crops[:0],
        crop_frame=np.ones(m, np.int64),
        crop_box=np.zeros((m, 4), np.float32),
        jpeg_start=np.arange(m + 1, dtype=np.int64) * 2,
        jpegs=np.arange(2 * m, dtype=np.uint8),
    )


def test_pool_is_the_normalised_mean_of_normalised_crops():
    rng = np.random.default_rng(0)
    crops = rng.standard_normal((9, 5)).astype(np.float32) * rng.uniform(0.1, 10, (9, 1)).astype(np.float32)
    start = np.array([0, 1, 4, 9])
    got = pool(crops, start, chunk=2)
    for i in range(3):
        block = crops[start[i] : start[i + 1]]
        mean = (block / np.linalg.norm(block, axis=1, keepdims=True)).mean(0)
        np.testing.assert_allclose(got[i], mean / np.linalg.norm(mean), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[0], crops[0] / np.linalg.norm(crops[0]), rtol=1e-5)


def test_sample_crops_spreads_over_time_and_prefers_good_boxes():
    frames = np.arange(1, 21)
    height = np.full(20, 100.0)
    height[[3, 12]] = 150.0  # the tallest of their runs
    visibility = np.ones(20, np.float32)
    visibility[17] = 0.1
    tracks = Tracks(
        path=None,  # type: ignore[arg-type]
        columns=9,
        frame=np.r_[frames, [5, 6]],
        track=np.r_[np.full(20, 1), [2, 2]],
        boxes=np.c_[np.zeros((22, 2)), np.full(22, 40.0), np.r_[height, [50, 60]]].astype(np.float32),
        score=np.ones(22, np.float32),
        visibility=np.r_[visibility, [1, 1]].astype(np.float32),
    )
    first, second = sample_crops(tracks, k=4)
    assert list(first) == [3, 5, 12, 15]  # runs 0-4, 5-9, 10-14, 15-19: tallest, else earliest visible
    assert list(second) == [20, 21]  # fewer rows than k: every row
    with pytest.raises(OccreidError, match="crops per track must be >= 1"):
        sample_crops(tracks, k=0)


def brute_force(index, query_row, exclude, rescore):
    f = index.features
    if rescore == "mean":
        sims = f @ f[query_row]
    else:
        q = index.crop_rows(query_row)
        sims = np.array([(q @ index.crop_rows(r).T).max() for r in range(len(index))])
    sims[exclude] = -np.inf
    order = np.argsort(-sims, kind="stable")
    return [(int(r), 1 - float(sims[r])) for r in order if np.isfinite(sims[r])]


@pytest.mark.parametrize("rescore", ["mean", "max"])
@pytest.mark.parametrize("backend", ["torch", "faiss"])
def test_search_by_track_leaves_out_its_camera_and_equals_brute_force(rescore, backend):
    pytest.importorskip("faiss")
    cameras = ["a"] * 7 + ["b"] * 6 + ["c"] * 5
    index = synthetic_index([1, 3, 8, 2, 5, 8, 4, 8, 1, 2, 3, 8, 8, 6, 7, 8, 2, 1], cameras)
    answer = search_by_track(index, "b", 10, topk=5, rescore=rescore, backend=backend)  # row 9
    assert answer["query"] == {"camera": "b", "track": 10}
    expected = brute_force(index, 9, np.asarray(cameras) == "b", rescore)[:5]
    assert [(r["camera"], r["track"]) for r in answer["results"]] == [
        (cameras[r], r + 1) for r, _ in expected
    ]
    assert [r["distance"] for r in answer["results"]] == pytest.approx([d for _, d in expected], abs=1e-5)
    assert all(r["camera"] != "b" for r in answer["results"])
    same = search_by_track(
        index, "b", 10, topk=30, include_same_camera=True, rescore=rescore, backend=backend
    )
    assert len(same["results"]) == 17 and (
        ("b", 3) not in [(r["camera"], r["track"]) for r in same["results"]]
    )
    assert {r["camera"] for r in same["results"]} == {"a", "b", "c"}
    first = same["results"][0]
    assert list(first)[:6] == ["camera", "track", "distance", "first_frame", "last_frame", "seconds"]
    assert first["seconds"] == [0.0, 1.0]


def test_search_errors_and_unknown_tracks():
    index = synthetic_index([2, 2, 2], ["a", "a", "b"])
    with pytest.raises(UnknownTrackError, match="no camera 'x' .*cameras: a, b"):
        search_by_track(index, "x", 1)
    with pytest.raises(UnknownTrackError, match="camera 'a' has no track 9"):
        search_by_track(index, "a", 9)
    with pytest.raises(OccreidError, match="topk must be >= 1"):
        search_by_track(index, "a", 1, topk=0)
    with pytest.raises(OccreidError, match="unknown rescore 'median'"):
        search_by_track(index, "a", 1, rescore="median")
    assert search_by_track(index, "b", 3, topk=10)["results"][0]["camera"] == "a"  # only 2 others: 2 results


def test_save_load_extend_and_drop_a_camera(tmp_path):
    index = synthetic_index([2, 3, 1], ["a", "a", "b"])
    other = synthetic_index([4, 1], ["c", "c"], seed=1)
    merged = index.extend(other)
    assert len(merged) == 5 and merged.camera_names == ["a", "b", "c"]
    assert merged.crops("c", 1) == other.crops("c", 1) and merged.thumbnail("c", 2) == other.thumbnail("c", 2)
    path = merged.save(tmp_path / "t.npz")
    loaded = load_index(path)
    assert isinstance(loaded, TrackIndex) and loaded.cameras == merged.cameras
    assert isinstance(loaded.crop_features, np.memmap) and isinstance(loaded.jpegs, np.memmap)  # not read yet
    with np.load(path) as data:  # the same arrays in a compressed .npz are read the ordinary way
        np.savez_compressed(tmp_path / "z.npz", **dict(data))
    again = load_index(tmp_path / "z.npz")
    assert again.crops("c", 1) == other.crops("c", 1) and not isinstance(again.crop_features, np.memmap)
    np.testing.assert_array_equal(loaded.crop_features, merged.crop_features)
    np.testing.assert_allclose(loaded.features, merged.features)
    dropped = loaded.without_camera("a")
    assert dropped.camera_names == ["b", "c"] and dropped.list_tracks(0, 10)[0] == 3
    assert dropped.crops("c", 1) == other.crops("c", 1) and dropped.thumbnail("b", 3) == index.thumbnail(
        "b", 3
    )
    np.testing.assert_allclose(dropped.features, merged.features[2:])
    total, rows = merged.list_tracks(offset=4, limit=10)
    assert total == 5 and [(r["camera"], r["track"]) for r in rows] == [("c", 2)]
    with pytest.raises(OccreidError, match="camera 'a' is already in the index"):
        merged.extend(index)
    with pytest.raises(OccreidError, match="16-d"):
        index.extend(synthetic_index([1], ["z"], dim=8))


def test_without_crop_features_entries_search_alike_and_max_rescoring_is_refused(tmp_path):
    kept = synthetic_index([2, 3, 1, 4], ["a", "a", "b", "b"])
    slim = synthetic_index([2, 3, 1, 4], ["a", "a", "b", "b"], crop_features=False)
    assert kept.keeps_crop_features and not slim.keeps_crop_features and slim.crop_features.shape == (0, 16)
    loaded = load_index(slim.save(tmp_path / "slim.npz"))
    assert not loaded.keeps_crop_features and loaded.crops("b", 4) == kept.crops("b", 4)
    assert search_by_track(loaded, "a", 1) == search_by_track(kept, "a", 1)
    with pytest.raises(OccreidError, match="--crop-features"):
        search_by_track(loaded, "a", 1, rescore="max")
    with pytest.raises(OccreidError, match="one index keeps crop features and the other does not"):
        kept.extend(synthetic_index([1], ["z"], crop_features=False))
    assert len(loaded.select(np.array([3, 0])).crop_frame) == 6


def test_a_version_2_file_loads_with_its_entries_pooled_from_the_crops(tmp_path):
    index = synthetic_index([2, 3, 1], ["a", "a", "b"])
    columns = ("camera_code", "track", "first_frame", "last_frame", "seconds", "thumb", "crop_start")
    columns += ("crop_features", "crop_frame", "crop_box", "jpeg_start", "jpegs")
    header = {"version": 2, "kind": "tracks", "meta": {}, "cameras": index.cameras}
    np.savez(tmp_path / "v2.npz", header=np.asarray(json.dumps(header)),
             **{name: getattr(index, name) for name in columns})  # fmt: skip
    old = load_index(tmp_path / "v2.npz")
    np.testing.assert_allclose(old.features, pool(index.crop_features, index.crop_start), atol=1e-6)
    assert old.keeps_crop_features and search_by_track(old, "b", 3, rescore="max")["results"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tracks")
    return folder, make_track_index(folder, crop_features=True)


def test_cli_builds_a_gallery_of_every_camera_and_searches_it(built):
    folder, path = built
    index = load_index(path)
    gt = {
        (f"cam{c}", int(t))
        for c in range(1, SMALL["cameras"] + 1)
        for t in np.loadtxt(folder / "recording" / f"cam{c}" / "gt" / "gt.txt", delimiter=",")[:, 1]
    }
    assert {(r["camera"], r["track"]) for r in index.list_tracks(0, 100)[1]} == gt
    assert index.meta["checkpoint_sha256"] and max(np.diff(index.crop_start)) == 8
    camera, track = "cam2", int(index.track[index.camera_code == 1][0])
    out = json.loads(run_cli("search", "--index", path, "--camera", camera, "--track", track, "--json"))
    assert out == json.loads(json.dumps(search_by_track(index, camera, track)))
    assert out["results"] and all(r["camera"] != camera for r in out["results"])
    both = json.loads(run_cli("search", "--index", path, "--camera", camera, "--track", track, "--json",
                              "--include-same-camera", "--rescore", "max", "--topk", "50"))  # fmt: skip
    assert len(both["results"]) == len(index) - 1 and camera in {r["camera"] for r in both["results"]}
    table = run_cli("search", "--index", path, "--camera", camera, "--track", track, "--topk", "2")
    assert f"query track {track} of {camera}" in table and len(table.strip().splitlines()) == 3
    crop = folder / "query.jpg"
    crop.write_bytes(index.crops("cam1", int(index.track[0]))[0])
    by_image = json.loads(run_cli("search", "--index", path, "--image", crop, "--json", "--device", "cpu"))
    assert by_image["query"] == str(crop) and by_image["results"][0]["camera"] == "cam1"


def _error(*args) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert isinstance(result.exception, OccreidError), (result.output, result.exception)
    return str(result.exception)


def test_cli_refusals_name_the_problem(built, tmp_path):
    folder, path = built
    cam = folder / "recording" / "cam1"
    ckpt = folder / "model.pt"
    add = ["index", "add", "--index", path, "--tracks", cam / "gt" / "gt.txt", "--video", cam / "video.mp4"]
    assert "camera 'cam1' is already in" in _error(*add, "--camera", "cam1", "--device", "cpu")
    assert "--camera NAME is required" in _error(*add, "--device", "cpu")
    both = ["index", "build", "--checkpoint", ckpt, "--out", tmp_path / "x.npz", "--images", folder]
    assert "not both" in _error(*both, "--tracks", cam / "gt" / "gt.txt")
    assert "--video goes with --tracks" in _error(*both, "--video", cam / "video.mp4")
    no_frames = ["index", "build", "--checkpoint", ckpt, "--out", tmp_path / "x.npz", "--camera", "c"]
    assert "exactly one of --video FILE or --frames DIR" in _error(
        *no_frames, "--tracks", cam / "gt" / "gt.txt"
    )
    det = ["--tracks", cam / "det" / "det.txt", "--video", cam / "video.mp4"]
    assert "holds detections only" in _error(*no_frames, *det)
    assert "no track 999" in _error("search", "--index", path, "--camera", "cam1", "--track", "999")
    assert "--image FILE, or as --camera NAME with --track ID" in _error(
        "search", "--index", path, "--camera", "c"
    )
    assert not (tmp_path / "x.npz").exists()
    images = ["index", "add", "--index", path, "--images", folder / "recording" / "cam1" / "img1"]
    assert "holds tracks; --images cannot be added" in _error(*images)
    from occreid.evaluation import GalleryIndex

    image_index = GalleryIndex(meta={"checkpoint": str(ckpt)})
    image_index.add(np.ones((1, 4)), ["a.jpg"])
    image_index.save(tmp_path / "images.npz")
    tracks = ["--camera", "cam9", "--tracks", cam / "gt" / "gt.txt", "--video", cam / "video.mp4"]
    assert "holds images; --tracks cannot be added" in _error(
        "index", "add", "--index", tmp_path / "images.npz", *tracks
    )
    assert "holds images, not tracks" in _error(
        "search", "--index", tmp_path / "images.npz", "--camera", "c", "--track", "1"
    )


def test_cli_replace_camera_and_the_index_lock(built, tmp_path):
    from occreid.utils.locks import file_lock, lock_path_for

    folder, original = built
    path = tmp_path / "tracks.npz"
    shutil.copy(original, path)
    cam = folder / "recording" / "cam3"
    before = load_index(path)
    args = ["index", "add", "--index", path, "--camera", "cam3", "--tracks", cam / "gt" / "gt.txt"]
    args += ["--frames", cam / "img1", "--device", "cpu", "--replace-camera", "--crops-per-track", "2"]
    with file_lock(lock_path_for(path), what="test"):
        assert "is in use by PID" in _error(*args)
    run_cli(*args)
    after = load_index(path)
    assert len(after) == len(before) and after.camera_names == ["cam1", "cam2", "cam3"]
    assert max(np.diff(after.crop_start)[after.camera_code == 2]) == 2
    np.testing.assert_array_equal(
        after.crop_features[: before.crop_start[5]], before.crop_features[: before.crop_start[5]]
    )


def test_cli_indexes_keep_crop_features_only_when_asked_and_add_follows_the_index(built, tmp_path):
    folder, kept_path = built
    kept, path = load_index(kept_path), tmp_path / "slim.npz"
    build = ["build", "--checkpoint", folder / "model.pt", "--out"]
    for number, verb in ((1, build), (2, ["add", "--index"])):
        cam = folder / "recording" / f"cam{number}"
        run_cli("index", *verb, path, "--camera", f"cam{number}", "--tracks", cam / "gt" / "gt.txt",
                "--video", cam / "video.mp4", "--device", "cpu")  # fmt: skip
    slim = load_index(path)
    assert not slim.keeps_crop_features and len(slim.crop_frame) == kept.crop_start[len(slim)]
    np.testing.assert_allclose(slim.features, kept.features[: len(slim)], atol=2e-3)
    assert path.stat().st_size < kept_path.stat().st_size
    camera, track = "cam2", int(slim.track[slim.camera_code == 1][0])
    assert json.loads(run_cli("search", "--index", path, "--camera", camera, "--track", track, "--json"))
    assert "--crop-features" in _error("search", "--index", path, "--camera", camera, "--track", track,
                                       "--rescore", "max")  # fmt: skip
    images = ["--out", tmp_path / "i.npz", "--images", folder, "--crop-features"]
    assert "--crop-features goes with --tracks" in _error("index", *build[:-1], *images)


def test_times_clipping_warning_and_the_overwrite_rule(built, tmp_path):
    """Without seqinfo.ini or --fps a frame folder gives no times (null); --fps gives them; a box outside the
    frame is clipped with one warning line; an existing index is not replaced without --overwrite."""
    folder, path = built
    shutil.copytree(folder / "recording" / "cam1" / "img1", tmp_path / "frames")
    rows = (folder / "recording" / "cam1" / "gt" / "gt.txt").read_text().splitlines()
    frame, track = rows[0].split(",")[:2]
    rows.append(f"{frame},{track},300,100,60,120,1,1,1.0")  # reaches past the 320-pixel-wide frame
    tracks = tmp_path / "tracks.txt"
    tracks.write_text("\n".join(rows) + "\n")
    out = tmp_path / "t.npz"
    args = ["index", "build", "--checkpoint", folder / "model.pt", "--out", out, "--camera", "c"]
    args += ["--tracks", tracks, "--frames", tmp_path / "frames", "--device", "cpu"]
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    assert "warning: 1 boxes in" in result.output and "clipped to it" in result.output
    entry = load_index(out).list_tracks(0, 1)[1][0]
    assert entry["seconds"] is None
    assert "exists; use `occreid index add`" in _error(*args)
    run_cli(*args, "--overwrite", "--fps", "4")
    entry = load_index(out).list_tracks(0, 1)[1][0]
    assert entry["seconds"] == [(entry["first_frame"] - 1) / 4, (entry["last_frame"] - 1) / 4]
