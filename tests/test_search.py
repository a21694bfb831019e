"""GalleryIndex search equals brute force (torch and faiss); save/load/append; the index/search CLI."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from occreid.cli import app
from occreid.config import Config
from occreid.errors import OccreidError
from occreid.evaluation import GalleryIndex


def brute_force(q, g, metric, k):
    if metric == "euclidean":
        d = ((q[:, None].astype(np.float64) - g[None]) ** 2).sum(-1)
    else:
        qn, gn = q / np.linalg.norm(q, axis=1, keepdims=True), g / np.linalg.norm(g, axis=1, keepdims=True)
        d = 1 - qn.astype(np.float64) @ gn.T
    idx = np.argsort(d, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d, idx, 1), idx


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("backend", ["torch", "faiss"])
def test_search_equals_brute_force(metric, backend):
    if backend == "faiss":
        pytest.importorskip("faiss")
    rng = np.random.default_rng(0)
    g, q = rng.standard_normal((500, 32)).astype(np.float32), rng.standard_normal((9, 32)).astype(np.float32)
    index = GalleryIndex(metric=metric)
    index.add(g[:300], [f"g{i}.jpg" for i in range(300)])
    index.add(torch.from_numpy(g[300:]), [f"g{i}.jpg" for i in range(300, 500)])
    dist, idx = index.search(q, topk=7, backend=backend, chunk_size=4)
    ref_d, ref_i = brute_force(q, g, metric, 7)
    np.testing.assert_array_equal(idx, ref_i)
    np.testing.assert_allclose(dist, ref_d, rtol=1e-4, atol=1e-4)
    top = index.search_paths(q[0], topk=3, backend=backend)[0]
    assert [p for p, _ in top] == [f"g{i}.jpg" for i in ref_i[0, :3]]


def test_save_load_append_and_compatibility(tmp_path):
    rng = np.random.default_rng(1)
    g = rng.standard_normal((20, 8)).astype(np.float32)
    index = GalleryIndex(meta={"checkpoint": "/a.pt", "image_size": [32, 16]})
    index.add(g[:10], [f"{i}" for i in range(10)])
    path = index.save(tmp_path / "idx.npz")
    loaded = GalleryIndex.load(path)
    loaded.add(g[10:], [f"{i}" for i in range(10, 20)])
    loaded.save(path)
    again = GalleryIndex.load(path)
    assert len(again) == 20 and again.paths[-1] == "19" and again.meta["image_size"] == [32, 16]
    np.testing.assert_array_equal(again.features, g)
    assert [p.name for p in tmp_path.iterdir()] == ["idx.npz"]  # no temporary files left
    again.check_compatible({"checkpoint": "/a.pt", "image_size": (32, 16)})
    with pytest.raises(OccreidError, match="checkpoint"):
        again.check_compatible({"checkpoint": "/b.pt"})
    with pytest.raises(OccreidError, match="8-d"):
        again.add(np.zeros((1, 4)), ["x"])
    with pytest.raises(OccreidError, match="not found"):
        GalleryIndex.load(tmp_path / "missing.npz")
    with pytest.raises(OccreidError, match="backend"):
        again.search(g[:1], backend="annoy")


def test_faiss_missing_gives_install_hint(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_faiss(name, *args, **kwargs):
        if name == "faiss":
            raise ImportError("no faiss")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_faiss)
    index = GalleryIndex()
    index.add(np.ones((2, 3)), ["a", "b"])
    with pytest.raises(OccreidError, match=r'pip install -e "\.\[faiss\]" in a clone'):
        index.search(np.ones((1, 3)), backend="faiss")


def _fake_model():
    # mean colour of each image quarter: images of similar colour are close
    return torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d((2, 2)), torch.nn.Flatten())


def _fake_loader(cfg):
    """A stand-in for occreid.cli.evaluation._load_model: the fake model with `cfg`'s settings, identified by
    the file's content hash as a real checkpoint is."""
    from occreid.inference.models import InferenceModel

    return lambda checkpoint, *_: InferenceModel.from_config(_fake_model(), cfg, checkpoint)


def test_cli_build_add_search(tmp_path, monkeypatch):
    import occreid.cli.evaluation as cli_eval

    cfg = Config()
    cfg.data.image_size = (32, 16)
    cfg.eval.batch_size = 4
    cfg.eval.normalize = False  # plain Euclidean on mean colours: grey is nearer to red than blue is
    monkeypatch.setattr(cli_eval, "_load_model", _fake_loader(cfg))
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(b"x")
    colours = {"red": (250, 0, 0), "green": (0, 250, 0), "blue": (0, 0, 250), "grey": (128, 128, 128)}
    (tmp_path / "gallery" / "sub").mkdir(parents=True)
    (tmp_path / "more").mkdir()
    for name, rgb in list(colours.items())[:3]:
        Image.new("RGB", (20, 40), rgb).save(tmp_path / "gallery" / "sub" / f"{name}.jpg")
    Image.new("RGB", (20, 40), colours["grey"]).save(tmp_path / "more" / "grey.png")
    Image.new("RGB", (20, 40), (240, 10, 10)).save(tmp_path / "query.jpg")
    index_path = tmp_path / "index.npz"
    runner = CliRunner()

    result = runner.invoke(
        app,
        [
            "index",
            "build",
            "--checkpoint",
            str(ckpt),
            "--images",
            str(tmp_path / "gallery"),
            "--out",
            str(index_path),
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "indexed 3 images" in result.output
    result = runner.invoke(
        app,
        ["index", "add", "--index", str(index_path), "--images", str(tmp_path / "more"), "--device", "cpu"],
    )
    assert result.exit_code == 0, result.output
    assert len(GalleryIndex.load(index_path)) == 4
    result = runner.invoke(
        app,
        [
            "search",
            "--index",
            str(index_path),
            "--image",
            str(tmp_path / "query.jpg"),
            "--topk",
            "2",
            "--json",
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert [r["path"].rsplit("/", 1)[-1] for r in out["results"]] == ["red.jpg", "grey.png"]
    assert out["results"][0]["distance"] < out["results"][1]["distance"]
    result = runner.invoke(
        app, ["search", "--index", str(index_path), "--image", str(tmp_path / "query.jpg"), "--device", "cpu"]
    )
    assert result.exit_code == 0 and "red.jpg" in result.stdout.splitlines()[1]

    # a different image size is a different feature space: refuse to append
    cfg.data.image_size = (64, 32)
    Image.new("RGB", (20, 40), (1, 2, 3)).save(tmp_path / "more" / "new.png")
    result = runner.invoke(
        app,
        ["index", "add", "--index", str(index_path), "--images", str(tmp_path / "more"), "--device", "cpu"],
    )
    assert isinstance(result.exception, OccreidError) and "image_size" in str(result.exception)
    result = runner.invoke(
        app,
        [
            "index",
            "build",
            "--checkpoint",
            str(ckpt),
            "--images",
            str(tmp_path / "nope"),
            "--out",
            str(tmp_path / "x.npz"),
        ],
    )
    assert isinstance(result.exception, OccreidError) and "nope" in str(result.exception)


def test_search_paths_and_cli_search_use_the_requested_device(tmp_path, monkeypatch):
    import occreid.cli.evaluation as cli_eval

    devices = []
    real_search = GalleryIndex._search_torch

    def recording_search(self, q, k, device, chunk_size):
        devices.append(device)
        return real_search(self, q, k, device, chunk_size)

    monkeypatch.setattr(GalleryIndex, "_search_torch", recording_search)
    rng = np.random.default_rng(2)
    g = rng.standard_normal((30, 12)).astype(np.float32)
    index = GalleryIndex(meta={"checkpoint": str(tmp_path / "model.pt")})
    index.add(g, [f"g{i}.jpg" for i in range(30)])
    top = index.search_paths(g[4], topk=2, device="cpu:0")[0]
    assert devices == ["cpu:0"] and top[0] == ("g4.jpg", pytest.approx(0.0, abs=1e-3))
    # the gallery kept on the device between searches is rebuilt after add
    index.add(g[4:5] + 100.0, ["far.jpg"])
    assert index.search_paths(g[4] + 100.0, topk=1, device="cpu:0")[0][0][0] == "far.jpg"

    cfg = Config()
    cfg.data.image_size = (32, 16)
    monkeypatch.setattr(cli_eval, "_load_model", _fake_loader(cfg))
    index = GalleryIndex(meta={"checkpoint": str(tmp_path / "model.pt")})
    index.add(rng.standard_normal((5, 12)).astype(np.float32), [f"g{i}.jpg" for i in range(5)])
    index.save(tmp_path / "index.npz")
    Image.new("RGB", (20, 40), (10, 20, 30)).save(tmp_path / "query.jpg")
    result = CliRunner().invoke(
        app,
        [
            "search",
            "--index",
            str(tmp_path / "index.npz"),
            "--image",
            str(tmp_path / "query.jpg"),
            "--device",
            "cpu:0",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert devices[-1] == "cpu:0"


@pytest.mark.parametrize("command", ["index add", "search"])
def test_index_without_checkpoint_names_the_problem(tmp_path, command):
    index = GalleryIndex()  # built from features, e.g. in Python: no checkpoint recorded
    index.add(np.ones((2, 3)), ["a.jpg", "b.jpg"])
    index.save(tmp_path / "index.npz")
    (tmp_path / "new").mkdir()
    Image.new("RGB", (20, 40), (1, 2, 3)).save(tmp_path / "new" / "c.jpg")
    args = ["--index", str(tmp_path / "index.npz")]
    if command == "search":
        args += ["--image", str(tmp_path / "new" / "c.jpg")]
    else:
        args += ["--images", str(tmp_path / "new")]
    result = CliRunner().invoke(app, [*command.split(), *args, "--device", "cpu"])
    assert isinstance(result.exception, OccreidError)
    hint = "; pass --checkpoint" if command == "index add" else " to embed the query with"
    assert str(result.exception) == f"{tmp_path / 'index.npz'} records no checkpoint{hint}"
