"""Recordings in: `occreid synth-video` output (deterministic, read back by py-motmetrics' own reader), MOT
track files (filters, refusals, clipping), frames from a folder or a video, and their bad inputs."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from recordings_fixtures import make_checkpoint, make_recording

from occreid.data.recordings import read_seqinfo, read_tracks, video_frames, video_info
from occreid.data.recordings.synth import SynthVideoSettings, make_scene, plan_walks, render_frame
from occreid.errors import OccreidError

TINY = {"cameras": 2, "people": 3, "frames": 12}


def _digests(folder):
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    return make_recording(tmp_path_factory.mktemp("rec") / "rec", **TINY)


def test_synth_video_is_deterministic_per_seed(recording, tmp_path):
    again = make_recording(tmp_path / "again", **TINY)
    assert _digests(again) == _digests(recording)  # frames, gt, det, seqinfo and the H.264 video
    other = make_recording(tmp_path / "other", **TINY, seed=1)
    assert (other / "cam1" / "gt" / "gt.txt").read_text() != (
        recording / "cam1" / "gt" / "gt.txt"
    ).read_text()


@pytest.mark.filterwarnings("ignore:Operation with tuple is deprecated")  # inside motmetrics, with pandas 3
def test_motmetrics_reads_back_the_ground_truth(recording):
    mm = pytest.importorskip("motmetrics")
    from occreid.data.recordings.synth import Identity  # noqa: F401 (the renderer's own people)
    from occreid.data.synthocc.identity import sample_identities

    settings = SynthVideoSettings(**{**TINY, "width": 320, "height": 180, "fps": 10, "seed": 0})
    walks = plan_walks(settings)
    identities = sample_identities(settings.people, np.random.default_rng([settings.seed, 100]))
    seen: dict[int, set[str]] = {}
    for camera in (1, 2):
        folder = recording / f"cam{camera}"
        gt = mm.io.loadtxt(str(folder / "gt" / "gt.txt"), fmt="mot16")
        scene = make_scene(settings, camera)
        truth = [
            row
            for f in range(1, 13)
            for row in render_frame(f, camera, walks, identities, scene, settings)[1]
        ]
        assert len(gt) == len(truth) > 0
        for frame, person, x, y, w, h, visibility in truth:
            row = gt.loc[(frame, person)]
            assert (row.X, row.Y, row.Width, row.Height) == (x, y, w, h)  # motmetrics: 0-based left/top
            assert row.Visibility == pytest.approx(visibility, abs=1e-3)
            assert 0 <= visibility <= 1
            seen.setdefault(person, set()).add(f"cam{camera}")
        det = mm.io.loadtxt(str(folder / "det" / "det.txt"), fmt="mot15-2D")
        assert set(det.index.get_level_values("Id")) == {-1}
        assert ((det.Confidence > 0) & (det.Confidence <= 1)).all()
        info = read_seqinfo(folder / "seqinfo.ini")
        assert (info.fps, info.length, info.width, info.height) == (10.0, 12, 320, 180)
        assert len(list((folder / "img1").glob("*.jpg"))) == 12
        assert video_info(folder / "video.mp4").frames == 12
    ours = read_tracks(recording / "cam1" / "gt" / "gt.txt")
    assert ours.columns == 9 and len(ours) == len(
        mm.io.loadtxt(str(recording / "cam1/gt/gt.txt"), fmt="mot16")
    )
    assert all(len(cams) >= 2 for cams in seen.values()) and len(seen) == 3  # everyone in >= 2 cameras


def _write(path, rows):
    path.write_text("".join(",".join(str(v) for v in row) + "\n" for row in rows))
    return path


def test_track_files_filter_clip_and_refuse(tmp_path):
    gt = _write(
        tmp_path / "gt.txt",
        [
            (1, 1, 11, 21, 10, 40, 1, 1, 0.9),
            (2, 1, 12, 22, 10, 40, 1, 1, 0.8),
            (2, 2, 50, 20, 10, 40, 0, 1, 1.0),  # flag 0: ignored
            (3, 3, 50, 20, 10, 40, 1, 3, 1.0),  # class 3 (car): skipped
            (3, 1, 95, 10, 20, 40, 1, 1, 0.5),  # reaches outside a 100-wide frame: clipped
            (4, 1, 300, 10, 20, 40, 1, 1, 0.5),  # wholly outside: dropped, counted
        ],
    )
    tracks = read_tracks(gt, frame_size=(100, 80))
    assert tracks.track_ids() == [1] and list(tracks.frame) == [1, 2, 3] and tracks.clipped == 2
    np.testing.assert_allclose(tracks.boxes[0], [10, 20, 10, 40])  # 1-based file -> 0-based boxes
    np.testing.assert_allclose(tracks.boxes[2], [94, 9, 6, 40])
    np.testing.assert_allclose(tracks.visibility, [0.9, 0.8, 0.5])

    tracker = _write(
        tmp_path / "t.txt", [(1, 7, 1, 1, 10, 30, 0.7, -1, -1, -1), (1, -1, 1, 1, 5, 5, 0.2, -1, -1, -1)]
    )
    t = read_tracks(tracker)
    assert t.columns == 10 and t.track_ids() == [7] and t.score[0] == pytest.approx(0.7)

    det = _write(tmp_path / "det.txt", [(1, -1, 1, 1, 10, 30, 0.9, -1, -1, -1)] * 3)
    with pytest.raises(OccreidError, match=r"det.txt holds detections only .*needs a tracker's output"):
        read_tracks(det)
    bad = tmp_path / "bad.txt"
    bad.write_text("1,1,1,1,10,30,1,1,1\n\n2,1,1,x,10,30,1,1,1\n")
    with pytest.raises(OccreidError, match=r"bad.txt, line 3: not a number"):
        read_tracks(bad)
    bad.write_text("1,1,1,1,10,30,1,1\n")
    with pytest.raises(OccreidError, match=r"bad.txt, line 1: 8 columns"):
        read_tracks(bad)
    bad.write_text("1,1,1,1,10,30,1,1,1\n0,1,1,1,10,30,1,1,1\n")
    with pytest.raises(OccreidError, match=r"bad.txt, line 2: frame 0"):
        read_tracks(bad)
    bad.write_text("1,1,1,1,0,30,1,1,1\n")
    with pytest.raises(OccreidError, match=r"bad.txt, line 1: box width and height"):
        read_tracks(bad)


def test_video_frames_in_order_and_bad_videos(recording, tmp_path):
    from PIL import Image

    video = recording / "cam1" / "video.mp4"
    got = list(video_frames(video, {2, 5}))
    assert [n for n, _ in got] == [2, 5] and got[0][1].shape == (180, 320, 3)
    jpeg = np.asarray(Image.open(recording / "cam1" / "img1" / "000005.jpg"), np.float32)
    assert np.abs(got[1][1].astype(np.float32) - jpeg).mean() < 6  # the same picture, two lossy codecs
    with pytest.raises(OccreidError, match=r"refers to frame 13 but the video .*ends at frame 12"):
        list(video_frames(video, {3, 13}))
    from occreid.data.recordings import folder_frames
    from occreid.retrieval import open_recording

    late = _write(
        tmp_path / "late.txt", [(3, 1, 11, 21, 10, 40, 1, 1, 1.0), (13, 1, 11, 21, 10, 40, 1, 1, 1.0)]
    )
    with pytest.raises(OccreidError, match=r"late.txt refers to frame 13 but the video .* has 12 frames"):
        open_recording(late, video=video)  # known before any decoding, from the container's count
    with pytest.raises(OccreidError, match=r"frame 13 is not in .*img1 \(no 000013.jpg\)"):
        list(folder_frames(recording / "cam1" / "img1", {2, 13}))
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 100)
    with pytest.raises(OccreidError, match=r"cannot decode video .*broken.mp4"):
        video_info(broken)
    half = tmp_path / "half.mp4"
    half.write_bytes(video.read_bytes()[: video.stat().st_size // 3])
    with pytest.raises(OccreidError, match=r"half.mp4"):
        list(video_frames(half, set(range(1, 13))))


def _cosines(a, b):
    a, b = a.astype(np.float32), b.astype(np.float32)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    return a @ b.T


def test_video_crops_match_frame_folder_crops(recording, tmp_path):
    """The same crops whether the frames come from the video or the JPEG folder: with the deployed model their
    features' cosine is >= 0.99; and as raw pixels (which tell crops apart far better than a random-weight
    network) every video crop is nearest to its own folder crop."""
    import torch

    from occreid.inference import FeatureExtractor
    from occreid.retrieval import GallerySettings, ingest, open_recording

    cam, keep = recording / "cam2", GallerySettings(crop_features=True)
    pixels = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d((16, 8)), torch.nn.Flatten())
    extractors = {
        "model": FeatureExtractor.from_checkpoint(
            make_checkpoint(tmp_path / "m.pt"), device="cpu", progress=False
        ),
        "pixels": FeatureExtractor(pixels, image_size=(64, 32), device="cpu", progress=False),
    }
    for name, extractor in extractors.items():
        video, _ = ingest("cam2", open_recording(cam / "gt/gt.txt", video=cam / "video.mp4"), extractor, keep)
        folder, _ = ingest("cam2", open_recording(cam / "gt/gt.txt", frames=cam / "img1"), extractor, keep)
        np.testing.assert_array_equal(video.crop_frame, folder.crop_frame)
        cosine = _cosines(video.crop_features, folder.crop_features)
        assert len(cosine) >= 8
        if name == "model":
            assert np.diag(cosine).min() >= 0.99
        else:
            np.testing.assert_array_equal(cosine.argmax(axis=1), np.arange(len(cosine)))
