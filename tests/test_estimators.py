import importlib
import json
import os
import time

import numpy as np
import pytest
from PIL import Image

from occreid.errors import OccreidError
from occreid.pose.estimators import build_estimator
from occreid.pose.estimators.base import (
    PoseEstimator,
    has_pose,
    no_pose,
    outside_image_to_zero,
    upscale_to_canvas,
)
from occreid.pose.estimators.coco_json import import_coco_json
from occreid.pose.estimators.synthetic import import_synthetic
from occreid.pose.extract import extract_keypoints, folder_relpaths
from occreid.pose.schema import COCO_KEYPOINTS, PART_GROUPS
from occreid.pose.store import KeypointStore

NOSE, LSH, RSH = (COCO_KEYPOINTS.index(n) for n in ("nose", "left_shoulder", "right_shoulder"))


# ---------------------------------------------------------------- shared pre-processing


def test_upscale_to_canvas_maps_back_exactly():
    image = np.zeros((128, 64, 3), np.uint8)
    canvas, (sx, sy), (ox, oy) = upscale_to_canvas(image, 256)
    assert canvas.shape == (256, 256, 3) and (sx, sy) == (2.0, 2.0) and (ox, oy) == (64.0, 0.0)
    image[40:44, 10:14] = 255  # a bright 4 x 4 block: continuous centre (12, 42)
    canvas, (sx, sy), (ox, oy) = upscale_to_canvas(image, 256)
    ys, xs = np.nonzero(canvas[..., 0] > 128)
    cx, cy = xs.mean() + 0.5, ys.mean() + 0.5  # continuous centre on the canvas
    assert ((cx - ox) / sx, (cy - oy) / sy) == pytest.approx((12.0, 42.0), abs=0.3)


# ---------------------------------------------------------------- coco-json


@pytest.fixture
def relpaths():
    return [
        "query/0001_c1s1_000001_00.jpg",
        "bounding_box_test/0001_c2s1_000002_00.jpg",
        "bounding_box_test/0002_c2s1_000003_00.jpg",
        "bounding_box_train/dup.jpg",
        "query/dup.jpg",
    ]


def entry(image_id, x, score, conf=0.9):
    kpts = []
    for i in range(17):
        kpts += [x + i, 10.0 + i, conf]
    return {"image_id": image_id, "category_id": 1, "keypoints": kpts, "score": score}


def test_coco_json_matching_duplicates_and_report(tmp_path, relpaths):
    data = [
        entry("0001_c1s1_000001_00.jpg", 5.0, 0.7),  # basename, unique
        entry("0001_c1s1_000001_00.jpg", 20.0, 0.9),  # higher score wins
        entry("0001_c1s1_000001_00.jpg", 30.0, 0.1),  # lower score dropped
        entry("/data/market/bounding_box_test/0001_c2s1_000002_00.jpg", 7.0, 0.8),  # absolute path, basename
        entry("dup.jpg", 1.0, 0.9),  # ambiguous basename
        entry("bounding_box_train/dup.jpg", 3.0, 0.9),  # exact relpath
        entry("nobody.jpg", 1.0, 0.9),  # unmatched
    ]
    path = tmp_path / "results.json"
    path.write_text(json.dumps(data))
    kpts, report = import_coco_json(path, relpaths)
    assert set(kpts) == set(relpaths)
    assert kpts["query/0001_c1s1_000001_00.jpg"][0].tolist() == pytest.approx([20.0, 10.0, 0.9])
    assert kpts["bounding_box_test/0001_c2s1_000002_00.jpg"][16].tolist() == pytest.approx([23.0, 26.0, 0.9])
    assert kpts["bounding_box_train/dup.jpg"][0, 0] == 3.0
    assert report.entries == 7 and report.matched_images == 3 and report.duplicates == 2
    assert report.unmatched == ["nobody.jpg"] and report.ambiguous == ["dup.jpg"]
    assert sorted(report.missing) == ["bounding_box_test/0002_c2s1_000003_00.jpg", "query/dup.jpg"]
    assert not has_pose(kpts["query/dup.jpg"])
    assert "1 entries match no dataset image (e.g. nobody.jpg)" in report.summary()


def test_coco_json_longest_suffix_wins_and_contradicting_folders_do_not_match(tmp_path):
    relpaths = ["occluded_body_images/001/001_01.tif", "a/b/x.jpg", "c/d/x.jpg", "query/y.jpg", "train/y.jpg"]
    data = [
        entry("whole_body_images/001/001_01.tif", 1.0, 0.9),  # unique basename, another folder: another image
        entry("/data/occluded_reid/occluded_body_images/001/001_01.tif", 2.0, 0.9),  # relpath is a suffix
        entry("b/x.jpg", 3.0, 0.9),  # a suffix of a/b/x.jpg only (c/d/x.jpg shares just the basename)
        entry("y.jpg", 4.0, 0.9),  # bare basename shared by two images
        entry("val/y.jpg", 5.0, 0.9),  # contradicts both
    ]
    (tmp_path / "r.json").write_text(json.dumps(data))
    kpts, report = import_coco_json(tmp_path / "r.json", relpaths)
    assert kpts["occluded_body_images/001/001_01.tif"][0, 0] == 2.0
    assert kpts["a/b/x.jpg"][0, 0] == 3.0 and not has_pose(kpts["c/d/x.jpg"])
    assert report.conflicting == ["whole_body_images/001/001_01.tif", "val/y.jpg"]
    assert report.ambiguous == ["y.jpg"] and report.unmatched == [] and report.matched_images == 2
    summary = report.summary()
    assert "2 entries whose folders contradict" in summary and "strip the folders" in summary


def test_coco_json_zeroes_keypoints_outside_the_image_like_the_estimators(tmp_path):
    root = tmp_path / "imgs"
    (root / "q").mkdir(parents=True)
    Image.fromarray(np.zeros((128, 64, 3), np.uint8)).save(root / "q" / "a.png")
    e = entry("q/a.png", 0.0, 1.0, conf=0.8)
    xy = {0: (-0.5, 10), 1: (64.0, 10), 2: (63.9, 127.9), 3: (10, 128.0), 4: (10, -1.0), 5: (0.0, 0.0)}
    for i, (x, y) in xy.items():
        e["keypoints"][3 * i : 3 * i + 2] = [x, y]
    (tmp_path / "r.json").write_text(json.dumps([e]))
    kpts, report = import_coco_json(tmp_path / "r.json", ["q/a.png"], root=root)
    k = kpts["q/a.png"]
    outside = [0, 1, 3, 4]  # x < 0, x >= W, y >= H, y < 0; keypoints 2 and 5 are just inside
    expected = np.where(np.isin(np.arange(17), outside), 0.0, 0.8)
    np.testing.assert_allclose(k[:, 2], expected)
    np.testing.assert_array_equal(k, outside_image_to_zero(k, 128, 64))  # the rule mediapipe / rtmlib apply
    assert report.outside_zeroed == 4 and "4 keypoints outside their image" in report.summary()
    # Without the root (image sizes unknown) nothing is zeroed.
    kpts, report = import_coco_json(tmp_path / "r.json", ["q/a.png"])
    assert (kpts["q/a.png"][:, 2] == np.float32(0.8)).all() and report.outside_zeroed == 0


def test_coco_json_integer_ids_and_visibility_flags(tmp_path, relpaths):
    e = entry(3, 5.0, 1.0, conf=2)
    e["keypoints"][2] = 1  # nose labelled but occluded
    data = {"images": [{"id": 3, "file_name": "0002_c2s1_000003_00.jpg"}], "annotations": [e]}
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(data))
    kpts, report = import_coco_json(path, relpaths)
    assert report.visibility_flags
    k = kpts["bounding_box_test/0002_c2s1_000003_00.jpg"]
    assert k[0, 2] == 0.0 and (k[1:, 2] == 1.0).all()
    # Integer ids without an "images" list are an error that says how to fix it.
    (tmp_path / "ids.json").write_text(json.dumps([entry(3, 5.0, 1.0)]))
    with pytest.raises(OccreidError, match="entry 0 has integer image_id 3.*--images-json"):
        import_coco_json(tmp_path / "ids.json", relpaths)
    kpts, _ = import_coco_json(tmp_path / "ids.json", relpaths, images_json=path)
    assert has_pose(kpts["bounding_box_test/0002_c2s1_000003_00.jpg"])


def test_coco_json_malformed(tmp_path, relpaths):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(OccreidError, match="bad.json is not valid JSON"):
        import_coco_json(bad, relpaths)
    short = tmp_path / "short.json"
    short.write_text(json.dumps([{"image_id": "a.jpg", "keypoints": [1, 2, 3]}]))
    with pytest.raises(
        OccreidError, match=r"short.json: entry 0 \(a.jpg\) has 3 keypoint numbers, expected 51"
    ):
        import_coco_json(short, relpaths)
    with pytest.raises(OccreidError, match="not found"):
        import_coco_json(tmp_path / "nope.json", relpaths)


# ---------------------------------------------------------------- synthetic


def test_synthetic_importer(tmp_path):
    store = KeypointStore(estimator="synthetic", settings={"seed": 0})
    k = np.zeros((17, 3), np.float32)
    k[:, 2] = 1
    store.add("query/a.jpg", k)
    store.add("query/b.jpg", np.zeros((17, 3)))
    store.save(tmp_path / "keypoints.npz")
    out = import_synthetic(tmp_path / "keypoints.npz", ["query/a.jpg", "query/b.jpg"])
    assert out.estimator == "synthetic" and len(out) == 2
    with pytest.raises(OccreidError, match="lacks 1 image"):
        import_synthetic(tmp_path / "keypoints.npz", ["query/a.jpg", "query/c.jpg"])
    store.estimator = "mediapipe"
    store.save(tmp_path / "other.npz")
    with pytest.raises(OccreidError, match="from estimator 'mediapipe'"):
        import_synthetic(tmp_path / "other.npz", ["query/a.jpg"])
    with pytest.raises(OccreidError, match="occreid synth"):
        import_synthetic(tmp_path / "missing.npz", ["query/a.jpg"])


# ---------------------------------------------------------------- extraction driver


class FakeEstimator(PoseEstimator):
    """Puts the nose at the image's brightest pixel; no person in all-black images."""

    name = "fake"

    def __init__(self, fail_after=None):
        self.calls, self.fail_after = 0, fail_after

    @property
    def settings(self):
        return {"version": 1}

    def predict(self, images):
        out = []
        for image in images:
            self.calls += 1
            if self.fail_after is not None and self.calls > self.fail_after:
                raise KeyboardInterrupt
            k = no_pose()
            if image.max() > 0:
                y, x = np.unravel_index(image[..., 0].argmax(), image.shape[:2])
                k[NOSE] = (x + 0.5, y + 0.5, 1.0)
            out.append(k)
        return out


@pytest.fixture
def image_folder(tmp_path):
    root = tmp_path / "imgs"
    (root / "sub").mkdir(parents=True)
    for i in range(7):
        a = np.zeros((128, 64, 3), np.uint8)
        if i % 3:
            a[10 + i, 5 + i] = 255
        Image.fromarray(a).save(root / ("sub" if i > 3 else "") / f"{i}.png")
    return root


def test_extract_resume_and_interrupt(image_folder):
    relpaths = folder_relpaths(image_folder)
    assert relpaths == ["0.png", "1.png", "2.png", "3.png", "sub/4.png", "sub/5.png", "sub/6.png"]
    out = image_folder / "keypoints.npz"
    with pytest.raises(KeyboardInterrupt):
        extract_keypoints(
            FakeEstimator(fail_after=4),
            image_folder,
            relpaths,
            out,
            batch_size=2,
            save_every=100,
            progress=False,
        )
    assert len(KeypointStore.load(out)) == 4  # the two completed batches were saved on the way out
    est = FakeEstimator()
    summary = extract_keypoints(est, image_folder, relpaths, out, batch_size=2, progress=False)
    assert est.calls == 3 and summary.skipped == 4 and summary.processed == 3
    assert summary.no_person_total == 3  # images 0, 3, 6 are black
    store = KeypointStore.load(out)
    assert store.estimator == "fake" and len(store) == 7
    assert store["sub/5.png"][NOSE].tolist() == [10.5, 15.5, 1.0]
    # Resuming into another estimator's store is refused unless --overwrite.
    other = FakeEstimator()
    other.name = "other"
    with pytest.raises(OccreidError, match="pass --overwrite"):
        extract_keypoints(other, image_folder, relpaths, out, progress=False)


def test_extract_names_an_unreadable_image(image_folder):
    (image_folder / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(OccreidError, match="broken.jpg"):
        extract_keypoints(
            FakeEstimator(),
            image_folder,
            folder_relpaths(image_folder),
            image_folder / "k.npz",
            progress=False,
        )
    assert len(KeypointStore.load(image_folder / "k.npz")) == 0  # saved, resumable


def test_cli_extract_coco_json_and_show(image_folder, tmp_path):
    from typer.testing import CliRunner

    from occreid.cli import app

    results = tmp_path / "res.json"
    results.write_text(json.dumps([entry("1.png", 20.0, 0.9), entry("5.png", 30.0, 0.9)]))
    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "pose",
            "extract",
            "--images",
            str(image_folder),
            "--estimator",
            "coco-json",
            "--input",
            str(results),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "5 dataset images without an entry" in res.output and "no person in 5" in res.output
    store = KeypointStore.load(image_folder / "keypoints.npz")
    assert store.estimator == "coco-json" and store["sub/5.png"][0, 0] == 20.0 + 10.0
    res = runner.invoke(app, ["pose", "extract", "--images", str(image_folder), "--estimator", "nope"])
    assert isinstance(res.exception, OccreidError) and "coco-json" in str(res.exception)


def marker_colour_near(png: np.ndarray, xy_display: np.ndarray, colour: tuple, tol: int = 12) -> bool:
    """True when a pixel within 1 px of the display point (matplotlib: origin bottom left) has `colour`."""
    x, y = int(round(xy_display[0])), png.shape[0] - int(round(xy_display[1]))
    patch = png[y - 1 : y + 2, x - 1 : x + 2, :3].astype(int)
    target = np.round(np.asarray(colour) * 255).astype(int)
    return bool((np.abs(patch - target).max(axis=-1) <= tol).any())


def test_cli_show_draws_the_grid_with_keypoints_where_they_are(tmp_path):
    """`pose show` on 2 images: the PNG has the documented size and the markers sit on the keypoints."""
    import matplotlib.pyplot as plt
    from typer.testing import CliRunner

    from occreid.cli import app
    from occreid.pose.visualize import pose_grid_figure

    root = tmp_path / "imgs"
    root.mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(np.full((128, 64, 3), 60, np.uint8)).save(root / name)
    nose, lknee = COCO_KEYPOINTS.index("nose"), COCO_KEYPOINTS.index("left_knee")
    kpts = {"a.png": no_pose(), "b.png": no_pose()}
    kpts["a.png"][nose] = (32.0, 20.0, 1.0)  # in the 64 x 128 original; at (64, 60) in the 128 x 384 input
    kpts["b.png"][lknee] = (16.0, 100.0, 1.0)  # shown at (32, 300)
    store = KeypointStore(estimator="test")
    store.update(kpts)
    store.save(root / "keypoints.npz")
    png_path = tmp_path / "grid.png"
    args = ["pose", "show", "--images", str(root), "--num", "2", "--out", str(png_path)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    png = np.asarray(Image.open(png_path))
    assert png.shape[:2] == (660, 1089)  # 2 rows x 3.0 in, (1 + 8) panels x 1.1 in, at 110 dpi
    # Where the markers must be: the same layout's data -> pixel transform (rows are the sorted relpaths).
    blank = np.zeros((128, 64, 3), np.uint8)
    fig = pose_grid_figure([blank, blank], [kpts["a.png"], kpts["b.png"]], titles=["a.png", "b.png"])
    fig.canvas.draw()  # places the equal-aspect image axes
    head_xy = fig.axes[0].transData.transform((64.0 - 0.5, 60.0 - 0.5))
    knee_xy = fig.axes[9].transData.transform((32.0 - 0.5, 300.0 - 0.5))
    wrong_xy = fig.axes[0].transData.transform((32.0 - 0.5, 20.0 - 0.5))
    plt.close(fig)
    tab10 = plt.get_cmap("tab10").colors
    head, knee = tab10[PART_GROUPS.index("head")], tab10[PART_GROUPS.index("left_knee")]
    assert marker_colour_near(png, head_xy, head) and marker_colour_near(png, knee_xy, knee)
    assert not marker_colour_near(png, head_xy, knee) and not marker_colour_near(png, knee_xy, head)
    # Keypoints drawn unscaled (at the original 64 x 128 coordinates) would not be there.
    assert not marker_colour_near(png, wrong_xy, head)


@pytest.mark.parametrize(("args", "feature_size"), [([], (24, 8)), (["--last-stride", "2"], (12, 4))])
def test_cli_show_renders_heatmaps_at_the_backbone_feature_size(
    image_folder, tmp_path, monkeypatch, args, feature_size
):
    from typer.testing import CliRunner

    import occreid.pose.heatmaps as heatmaps
    from occreid.cli import app

    store = KeypointStore(estimator="test")
    store.update({p: no_pose() for p in folder_relpaths(image_folder)})
    store.save(image_folder / "keypoints.npz")
    seen = []
    real = heatmaps.render_part_heatmaps

    def spy(keypoints, image_size, feature_size, cfg):
        seen.append((tuple(image_size), tuple(feature_size)))
        return real(keypoints, image_size, feature_size, cfg)

    monkeypatch.setattr(heatmaps, "render_part_heatmaps", spy)
    out = tmp_path / "g.png"
    show = ["pose", "show", "--images", str(image_folder), "--num", "1", "--out", str(out)]
    res = CliRunner().invoke(app, [*show, *args])
    assert res.exit_code == 0, res.output
    assert seen == [((384, 128), feature_size)]


def test_heatmap_size_follows_the_backbone():
    from occreid.modeling.backbone import ResNetBackbone
    from occreid.pose.heatmaps import feature_map_size

    torch = pytest.importorskip("torch")
    for last_stride in (1, 2):
        backbone = ResNetBackbone("resnet18", last_stride).eval()
        for size in [(384, 128), (256, 128), (250, 100)]:
            with torch.no_grad():
                f = backbone(torch.zeros(1, 3, *size))
            assert feature_map_size(size, last_stride) == tuple(f.shape[2:])


class ClosingEstimator(FakeEstimator):
    name = "closing"
    closed = 0

    def close(self):
        ClosingEstimator.closed += 1


@pytest.mark.parametrize("fail", [False, True])
def test_cli_closes_the_estimator(image_folder, tmp_path, monkeypatch, fail):
    from typer.testing import CliRunner

    import occreid.pose.estimators as estimators
    from occreid.cli import app

    built = []

    def fake_build(name, model=None, device="cpu"):
        built.append((name, model, device))
        return ClosingEstimator(fail_after=0 if fail else None)

    ClosingEstimator.closed = 0
    monkeypatch.setattr(estimators, "build_estimator", fake_build)
    runner = CliRunner()
    res = runner.invoke(app, ["pose", "extract", "--images", str(image_folder), "--estimator", "mediapipe"])
    assert (res.exit_code != 0) == fail and ClosingEstimator.closed == 1
    show = ["pose", "show", "--images", str(image_folder), "--num", "1", "--out", str(tmp_path / "g.png")]
    res = runner.invoke(app, [*show, "--estimator", "rtmlib", "--model", "m.onnx", "--device", "cuda"])
    assert (res.exit_code != 0) == fail and ClosingEstimator.closed == 2
    assert built == [("mediapipe", None, "cpu"), ("rtmlib", "m.onnx", "cuda")]


# ---------------------------------------------------------------- rtmlib (no weights here: a fake ONNX model)


def test_rtmlib_local_model_errors_name_the_path(tmp_path):
    with pytest.raises(OccreidError, match=r"--model .*rtmpose.onnx: file not found.*--model PATH"):
        build_estimator("rtmlib", model=tmp_path / "rtmpose.onnx")
    (tmp_path / "model.pt").write_bytes(b"x")
    with pytest.raises(OccreidError, match=r"model.pt: expected an .onnx file"):
        build_estimator("rtmlib", model=tmp_path / "model.pt")


@pytest.fixture
def rtmlib_offline(tmp_path, monkeypatch):
    """rtmlib with an empty model cache and a network that fails at once; yields the list of URLs tried."""
    rtmlib_file = pytest.importorskip("rtmlib.tools.file")
    pytest.importorskip("onnxruntime")
    from urllib.error import URLError

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "rtmlib_cache"))  # where rtmlib caches its downloads
    tried = []

    def no_network(url, dst, *args, **kwargs):
        tried.append(url)
        raise URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(rtmlib_file, "download_url_to_file", no_network)
    return tried


@pytest.mark.parametrize("model", [None, "https://example.org/models/rtmpose-t.onnx"])
def test_rtmlib_download_without_network_says_to_pass_a_local_path(rtmlib_offline, model):
    from occreid.pose.estimators.rtmlib import DEFAULT_MODEL_URL

    start = time.perf_counter()
    with pytest.raises(OccreidError) as err:
        build_estimator("rtmlib", model=model)
    assert time.perf_counter() - start < 5
    url = model or DEFAULT_MODEL_URL
    assert rtmlib_offline[0] == url  # rtmlib itself was asked to download it (then maybe its mirror)
    message = str(err.value)
    assert f"could not download {url}" in message and "no network" in message
    assert "Pass a local model" in message and "--model PATH" in message


def test_rtmlib_downloads_a_url_through_rtmlib(rtmlib_offline, tmp_path, monkeypatch):
    import shutil

    import rtmlib.tools.file as rtmlib_file

    n = np.arange(17)
    fake_rtmpose_onnx(tmp_path / "served.onnx", (2 * (40 + 5 * n)), (2 * (30 + 10 * n)))

    def serve(url, dst, *args, **kwargs):
        shutil.copy(tmp_path / "served.onnx", dst)

    monkeypatch.setattr(rtmlib_file, "download_url_to_file", serve)
    est = build_estimator("rtmlib", model="https://example.org/models/rtmpose-fake.onnx")
    assert est.model == tmp_path / "rtmlib_cache" / "hub" / "checkpoints" / "rtmpose-fake.onnx"
    assert est.settings["model"] == "rtmpose-fake.onnx" and est.settings["family"] == "rtmpose"
    assert est.predict([np.zeros((128, 64, 3), np.uint8)])[0].shape == (17, 3)
    est.close()


def test_rtmlib_default_model_is_rtmlibs_own():
    rtmlib = pytest.importorskip("rtmlib")
    from occreid.pose.estimators.rtmlib import DEFAULT_MODEL_URL

    assert DEFAULT_MODEL_URL == rtmlib.Body.MODE["balanced"]["pose"]


def test_device_option(tmp_path, monkeypatch):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("rtmlib")
    from typer.testing import CliRunner

    from occreid.cli import app

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(OccreidError, match="--device cuda: onnxruntime has no CUDAExecutionProvider.*-gpu"):
        build_estimator("rtmlib", model=tmp_path / "m.onnx", device="cuda")
    with pytest.raises(OccreidError, match="--device tpu: the rtmlib estimator runs on cpu or cuda"):
        build_estimator("rtmlib", model=tmp_path / "m.onnx", device="tpu")
    with pytest.raises(OccreidError, match="mediapipe's pose solution runs on the CPU only"):
        build_estimator("mediapipe", device="cuda")
    # The CLI passes --device through to the estimator.
    (tmp_path / "imgs").mkdir()
    Image.fromarray(np.zeros((8, 4, 3), np.uint8)).save(tmp_path / "imgs" / "a.png")
    extract = ["pose", "extract", "--images", str(tmp_path / "imgs"), "--estimator", "rtmlib"]
    res = CliRunner().invoke(app, [*extract, "--model", str(tmp_path / "m.onnx"), "--device", "cuda"])
    assert isinstance(res.exception, OccreidError) and "--device cuda" in str(res.exception)


def constant_onnx(path, outputs):
    """An ONNX model with a fixed 1x3x256x192 input whose outputs are the given constant arrays
    (name -> array)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("Constant", [], [name], value=numpy_helper.from_array(a.astype(np.float32)))
        for name, a in outputs.items()
    ]
    graph = helper.make_graph(
        nodes,
        "fake",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 256, 192])],
        [
            helper.make_tensor_value_info(name, TensorProto.FLOAT, list(a.shape))
            for name, a in outputs.items()
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)


def fake_rtmpose_onnx(path, peaks_x, peaks_y, score=0.8):
    """A SimCC 'RTMPose' (input 1x3x256x192) whose outputs are constant one-hot vectors at the given bins."""
    sx = np.zeros((1, 17, 384), np.float32)
    sy = np.zeros((1, 17, 512), np.float32)
    sx[0, np.arange(17), peaks_x] = score
    sy[0, np.arange(17), peaks_y] = score
    constant_onnx(path, {"simcc_x": sx, "simcc_y": sy})


def test_rtmlib_full_crop_box_maps_back_to_image_pixels(tmp_path):
    pytest.importorskip("rtmlib")
    pytest.importorskip("onnxruntime")
    n = np.arange(17)
    x_in, y_in = 40.0 + 5 * n, 30.0 + 10 * n  # keypoints in model-input pixels; SimCC bins are half pixels
    fake_rtmpose_onnx(tmp_path / "m.onnx", (2 * x_in).astype(int), (2 * y_in).astype(int))
    est = build_estimator("rtmlib", model=tmp_path / "m.onnx")
    assert est.settings["family"] == "rtmpose" and est.settings["input_size_wh"] == [192, 256]
    k = est.predict([np.zeros((128, 64, 3), np.uint8)])[0]
    # Box [0, 0, 64, 128] * 1.25 padding, widened to the 3:4 input aspect: 120 x 160 around (32, 64).
    exp_x, exp_y = x_in * 120 / 192 + 32 - 60, y_in * 160 / 256 + 64 - 80
    inside = (exp_x >= 0) & (exp_x < 64) & (exp_y >= 0) & (exp_y < 128)
    np.testing.assert_allclose(k[:, 0], exp_x, atol=1e-3)
    np.testing.assert_allclose(k[:, 1], exp_y, atol=1e-3)
    np.testing.assert_allclose(k[:, 2], np.where(inside, 0.8, 0.0), atol=1e-6)
    assert not inside[0] and inside[5]


# ---------------------------------------------------------------- mediapipe on a real photo


def in_ci() -> bool:
    """CI sets CI=true (GitHub Actions, GitLab, most others)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_pose_extra(module: str):
    """Import `module` from the pose extra. Outside CI a failed import skips (naming the extra); in CI, which
    installs the extra, it is a test failure showing the import error, so a broken install cannot hide."""
    try:
        return importlib.import_module(module)
    except Exception as exc:  # a broken install raises all sorts (ImportError, AttributeError, ...)
        if in_ci():
            error = f"{type(exc).__name__}: {exc}"
            pytest.fail(f"CI installs the pose extra, but importing {module} failed: {error}", pytrace=False)
        pytest.skip(
            f"{module} is not importable ({type(exc).__name__}: {exc}); install the pose extra: "
            "pip install 'occreid[pose]'"
        )


@pytest.fixture(scope="module")
def mediapipe_pose():
    require_pose_extra("mediapipe.python.solutions.pose")
    with build_estimator("mediapipe") as est:
        yield est


def test_blazepose_to_coco_table_matches_mediapipes_landmark_names():
    from occreid.pose.estimators.mediapipe import BLAZEPOSE_TO_COCO

    landmark = require_pose_extra("mediapipe.python.solutions.pose").PoseLandmark
    assert len(BLAZEPOSE_TO_COCO) == len(COCO_KEYPOINTS) == 17
    for name, index in zip(COCO_KEYPOINTS, BLAZEPOSE_TO_COCO):
        assert landmark[name.upper()].value == index, f"COCO {name} -> BlazePose {landmark(index).name}"


def test_require_pose_extra_fails_in_ci_and_skips_elsewhere(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI installs the pose extra, but importing no_such_pose"):
        require_pose_extra("no_such_pose_lib")
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match=r"no_such_pose_lib is not importable.*occreid\[pose\]"):
        require_pose_extra("no_such_pose_lib")


@pytest.fixture(scope="module")
def astronaut():
    data = pytest.importorskip("skimage.data", reason="scikit-image not installed (test extra)")
    return (
        data.astronaut()
    )  # 512 x 512, Eileen Collins facing the camera, head and shoulders in the upper half


def test_mediapipe_on_astronaut(mediapipe_pose, astronaut):
    k = mediapipe_pose.predict([astronaut])[0]
    assert k.shape == (17, 3) and k.dtype == np.float32
    nose, ls, rs = k[NOSE], k[LSH], k[RSH]
    assert min(nose[2], ls[2], rs[2]) > 0.8
    assert 150 < nose[0] < 300 and 80 < nose[1] < 200  # the face
    assert nose[1] < ls[1] - 50 and nose[1] < rs[1] - 50  # nose above the shoulders
    assert rs[0] < nose[0] < ls[0]  # facing us: her left shoulder is on the image's right
    assert 180 < ls[1] < 330 and 180 < rs[1] < 330 and ls[0] - rs[0] > 120  # shoulders across the suit


def test_mediapipe_on_a_reid_sized_crop(mediapipe_pose, astronaut):
    crop = np.asarray(Image.fromarray(astronaut[0:512, 80:336]).resize((64, 128), Image.BILINEAR))
    k = mediapipe_pose.predict([crop])[0]
    nose, ls, rs = k[NOSE], k[LSH], k[RSH]
    assert min(nose[2], ls[2], rs[2]) > 0.5
    # The same landmarks as on the full photo, in the crop's 64 x 128 pixels (x: (X - 80) / 4, y: Y / 4).
    assert 10 < nose[0] < 50 and 20 < nose[1] < 50
    assert nose[1] < min(ls[1], rs[1]) and rs[0] < nose[0] < ls[0]
    assert (k[:, 0][k[:, 2] > 0] < 64).all() and (k[:, 1][k[:, 2] > 0] < 128).all()


def test_mediapipe_finds_the_upper_body_crop_its_black_square_canvas_misses(mediapipe_pose, astronaut):
    """The astronaut cropped to 320 x 512, resized to 128 x 256 and saved as JPEG. Raw
    mediapipe finds her on the image as it is; the square black canvas alone finds nobody. The estimator tries
    more canvases and keeps the best result (benchmarks/results/bench_pose_canvas.md has the rates)."""
    import io

    from occreid.pose.estimators.mediapipe import MediaPipePose

    buffer = io.BytesIO()
    Image.fromarray(astronaut[0:512, 96:416]).resize((128, 256), Image.BILINEAR).save(
        buffer, "JPEG", quality=90
    )
    crop = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    with MediaPipePose(canvases=("square",)) as square_only:
        assert not has_pose(square_only.predict_one(crop))
        assert has_pose(square_only.predict_on_canvas(crop, "crop"))  # the image as it is
    k = mediapipe_pose.predict([crop])[0]
    nose, ls, rs = k[NOSE], k[LSH], k[RSH]
    assert min(nose[2], ls[2], rs[2]) > 0.5
    assert nose[1] < min(ls[1], rs[1]) and rs[0] < nose[0] < ls[0]  # her face above her shoulders, facing us
    assert mediapipe_pose.settings["canvases"] == ["square", "crop", "grey", "margin"]


def test_mediapipe_finds_no_person_in_a_blank_image(mediapipe_pose):
    k = mediapipe_pose.predict([np.full((128, 64, 3), 127, np.uint8)])[0]
    assert not has_pose(k)


def fake_vitpose_onnx(path, peaks_u, peaks_v, score=0.9):
    """A 'ViTPose' (input 1x3x256x192) whose one output is constant 64x48 heatmaps, a Gaussian at each
    peak."""
    yy, xx = np.mgrid[0:64, 0:48]
    heat = np.stack(
        [score * np.exp(-((xx - u) ** 2 + (yy - v) ** 2) / (2 * 2.0**2)) for u, v in zip(peaks_u, peaks_v)]
    )
    constant_onnx(path, {"heatmaps": heat[None]})


def test_rtmlib_vitpose_heatmap_model_maps_back_to_image_pixels(tmp_path):
    pytest.importorskip("rtmlib")
    pytest.importorskip("onnxruntime")
    n = np.arange(17)
    u, v = 10 + n, 8 + 3 * n  # heatmap cells (48 x 64), away from the border
    fake_vitpose_onnx(tmp_path / "vit.onnx", u, v)
    est = build_estimator("rtmlib", model=tmp_path / "vit.onnx")
    assert est.settings["family"] == "vitpose" and est.settings["input_size_wh"] == [192, 256]
    k = est.predict([np.zeros((128, 64, 3), np.uint8)])[0]
    # rtmlib (UDP): heatmap cell u of W=48 -> u / (W - 1) of the 120 x 160 box around (32, 64), as for
    # RTMPose.
    exp_x, exp_y = u / 47 * 120 + 32 - 60, v / 63 * 160 + 64 - 80
    inside = (exp_x >= 0) & (exp_x < 64) & (exp_y >= 0) & (exp_y < 128)
    assert inside.sum() >= 10
    np.testing.assert_allclose(k[inside, 0], exp_x[inside], atol=0.05)
    np.testing.assert_allclose(k[inside, 1], exp_y[inside], atol=0.05)
    np.testing.assert_allclose(k[inside, 2], 0.9, atol=1e-3)
    assert (k[~inside, 2] == 0).all()  # outside the crop: no confidence
