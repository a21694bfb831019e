"""Exported .onnx files as models: their metadata, and `eval`, `index`, `search` and `FeatureExtractor` giving
the checkpoint's features from them; int8 export; the runtime choice; broken and foreign .onnx files."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from occreid.cli import app
from occreid.errors import OccreidError

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

TINY = [
    "model.name=baseline",
    "model.backbone=resnet18",
    "model.pretrained=false",
    "data.image_size=[64,32]",
    "eval.flip=true",
    "eval.batch_size=3",
]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny ResNet-18 checkpoint (BN statistics moved off their init), its fp32 export via `occreid export`,
    and a Market-1501-style folder of random images: query (2 ids, camera 1), gallery (3 ids, camera 2)."""
    from occreid.config import load_config
    from occreid.methods import build_model
    from occreid.modeling.checkpoint import save_checkpoint

    root = tmp_path_factory.mktemp("onnx")
    cfg = load_config(None, TINY)
    torch.manual_seed(0)
    method = build_model(cfg, num_classes=4)
    with torch.no_grad():
        method.train()(torch.randn(8, 3, 64, 32))
    ckpt = root / "run" / "best.pt"
    ckpt.parent.mkdir()
    save_checkpoint(
        ckpt, {"model": method.state_dict(), "config": cfg.model_dump(mode="json"), "num_classes": 4}
    )
    rng = np.random.default_rng(0)
    market = root / "market"
    names = {"query": ["0001_c1s1_000001_00", "0002_c1s1_000002_00"], "bounding_box_test": []}
    names["bounding_box_test"] = [f"000{p}_c2s1_00001{i}_00" for p in (1, 2, 3) for i in range(2)]
    names["bounding_box_train"] = ["0009_c1s1_000001_00"]  # the loader wants a training split
    for folder, stems in names.items():
        (market / folder).mkdir(parents=True)
        for stem in stems:
            pixels = rng.integers(0, 256, (80 + 8 * len(stem) % 5, 40, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(market / folder / f"{stem}.jpg", quality=95)
    onnx_path = root / "model.onnx"
    result = CliRunner().invoke(app, ["export", "--checkpoint", str(ckpt), "--out", str(onnx_path)])
    assert result.exit_code == 0, result.output
    return ckpt, onnx_path, market


def test_metadata_survives_the_round_trip(exported):
    from occreid.inference.models import load_inference_model
    from occreid.utils.hashing import file_sha256

    ckpt, onnx_path, _ = exported
    loaded = load_inference_model(onnx_path, device="cpu")
    assert (loaded.runtime, loaded.precision, loaded.feature_dim) == ("onnx", "fp32", 512)
    assert (loaded.image_size, loaded.flip, loaded.batch_size) == ((64, 32), True, 3)
    assert loaded.mean == pytest.approx([0.485, 0.456, 0.406]) and loaded.std == pytest.approx(
        [0.229, 0.224, 0.225]
    )
    assert (loaded.metric, loaded.normalize) == ("euclidean", True)
    assert loaded.source_sha256 == file_sha256(ckpt)
    provenance = loaded.provenance
    assert (provenance["method"], provenance["backbone"], provenance["source_checkpoint"]) == (
        "baseline",
        "resnet18",
        "best.pt",
    )
    assert provenance["occreid_version"] and len(provenance["config_sha256"]) == 64
    assert {"git_commit", "git_dirty", "init"} <= set(provenance)  # the keys of every result's provenance
    from occreid.modeling.checkpoint import load_checkpoint
    from occreid.utils.provenance import config_sha256, init_of

    stored = load_checkpoint(ckpt)["config"]
    assert provenance["config_sha256"] == config_sha256(stored) and provenance["init"] == init_of(stored)


def _features(ckpt, images, runtime="auto"):
    from occreid.inference.extractor import FeatureExtractor

    return FeatureExtractor.from_checkpoint(ckpt, device="cpu", progress=False, runtime=runtime)(images)


def test_feature_extractor_gives_the_checkpoints_features(exported):
    ckpt, onnx_path, market = exported
    images = sorted(str(p) for p in (market / "bounding_box_test").glob("*.jpg"))
    reference = _features(ckpt, images)  # torch, the reference path
    for model, runtime in ((onnx_path, "auto"), (ckpt, "onnx")):
        got = _features(model, images, runtime)
        assert got.shape == reference.shape == (6, 512)
        assert (got - reference).abs().max().item() < 1e-4, (model, runtime)
    # the thread pool and the plain loop give the same features
    from occreid.inference.extractor import FeatureExtractor

    plain = FeatureExtractor.from_checkpoint(ckpt, device="cpu", progress=False)
    plain.workers = 0
    assert torch.equal(plain(images), reference)


def test_eval_of_the_onnx_file_matches_the_checkpoint(exported, tmp_path):
    ckpt, onnx_path, market = exported
    runner = CliRunner()
    common = ["--dataset", "market1501", "--root", str(market)]
    outs = {}
    for name, model in (("pt", ckpt), ("onnx", onnx_path)):
        outs[name] = tmp_path / f"{name}.json"
        result = runner.invoke(app, ["eval", "--checkpoint", str(model), *common, "--out", str(outs[name])])
        assert result.exit_code == 0, result.output
    pt, ox = (json.loads(outs[n].read_text()) for n in ("pt", "onnx"))
    assert ox["settings"]["runtime"] == "onnx" and ox["settings"]["precision"] == "fp32"
    assert ox["metrics"]["mAP"] == pytest.approx(pt["metrics"]["mAP"], abs=1e-6)
    assert ox["cmc"] == pt["cmc"] and ox["model"]["method"] == "baseline"
    result = runner.invoke(app, ["eval", "--checkpoint", str(onnx_path)])
    assert isinstance(result.exception, OccreidError) and "--dataset NAME --root DIR" in str(result.exception)


def test_index_and_search_accept_the_fp32_export_of_the_checkpoint(exported, tmp_path):
    from occreid.evaluation.index import GalleryIndex

    ckpt, onnx_path, market = exported
    runner = CliRunner()
    index = tmp_path / "index.npz"
    gallery = ["--images", str(market / "bounding_box_test"), "--device", "cpu"]
    ok = runner.invoke(app, ["index", "build", "--checkpoint", str(ckpt), *gallery, "--out", str(index)])
    assert ok.exit_code == 0, ok.output
    by_onnx = tmp_path / "by_onnx.npz"
    ok = runner.invoke(
        app, ["index", "build", "--checkpoint", str(onnx_path), *gallery, "--out", str(by_onnx)]
    )
    assert ok.exit_code == 0, ok.output
    in_memory = tmp_path / "in_memory.npz"  # --runtime onnx: the .pt exported in memory
    args = [
        "index",
        "build",
        "--checkpoint",
        str(ckpt),
        "--runtime",
        "onnx",
        *gallery,
        "--out",
        str(in_memory),
    ]
    ok = runner.invoke(app, args)
    assert ok.exit_code == 0, ok.output
    a, b = GalleryIndex.load(index), GalleryIndex.load(by_onnx)
    assert np.abs(a.features - b.features).max() < 1e-4
    assert np.abs(a.features - GalleryIndex.load(in_memory).features).max() < 1e-4
    assert a.meta["checkpoint_sha256"] == b.meta["checkpoint_sha256"] and a.precision == b.precision == "fp32"

    query = sorted((market / "query").glob("*.jpg"))[0]
    searches = []
    for model in (ckpt, onnx_path):
        args = ["search", "--index", str(index), "--image", str(query), "--json", "--checkpoint", str(model)]
        result = runner.invoke(app, [*args, "--device", "cpu", "--topk", "6"])
        assert result.exit_code == 0, result.output
        searches.append(json.loads(result.stdout)["results"])
    assert [r["path"] for r in searches[0]] == [r["path"] for r in searches[1]]
    assert np.allclose([r["distance"] for r in searches[0]], [r["distance"] for r in searches[1]], atol=1e-4)
    # adding with the export is adding with the same model
    (tmp_path / "more").mkdir()
    Image.open(query).save(tmp_path / "more" / "q.jpg")
    ok = add_images(runner, index, tmp_path / "more", onnx_path)
    assert ok.exit_code == 0, ok.output
    assert len(GalleryIndex.load(index)) == 7


def add_images(runner: CliRunner, index: Path, folder: Path, checkpoint: Path):
    """`occreid index add --index INDEX --images FOLDER --checkpoint CHECKPOINT`, run in-process."""
    args = ["index", "add", "--index", index, "--images", folder, "--checkpoint", checkpoint]
    return runner.invoke(app, [str(a) for a in args])


def test_int8_is_refused_in_an_int8_index_mix_and_warned_on_search(exported, tmp_path):
    from occreid.evaluation.index import GalleryIndex

    ckpt, onnx_path, market = exported
    runner = CliRunner()
    int8 = tmp_path / "int8.onnx"
    calibration = ["--calibration", str(market / "bounding_box_test"), "--calibration-images", "4"]
    result = runner.invoke(
        app, ["export", "--checkpoint", str(ckpt), "--out", str(int8), "--int8", *calibration]
    )
    assert result.exit_code == 0, result.output
    assert "int8" in result.output and "img/s" in result.output
    index = tmp_path / "index.npz"
    gallery = ["--images", str(market / "bounding_box_test"), "--device", "cpu"]
    assert (
        runner.invoke(
            app, ["index", "build", "--checkpoint", str(onnx_path), *gallery, "--out", str(index)]
        ).exit_code
        == 0
    )
    (tmp_path / "more").mkdir()
    query = sorted((market / "query").glob("*.jpg"))[0]
    Image.open(query).save(tmp_path / "more" / "q.jpg")
    result = add_images(runner, index, tmp_path / "more", int8)
    assert isinstance(result.exception, OccreidError)
    assert "fp32 features but this model gives int8" in str(result.exception)
    assert len(GalleryIndex.load(index)) == 6
    result = runner.invoke(
        app,
        [
            "search",
            "--index",
            str(index),
            "--image",
            str(query),
            "--checkpoint",
            str(int8),
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "warning: the index holds fp32 features but this model gives int8" in result.output


def test_int8_refuses_an_empty_calibration_folder(exported, tmp_path):
    ckpt, _, _ = exported
    (tmp_path / "empty").mkdir()
    out = tmp_path / "int8.onnx"
    for extra, message in (
        (["--calibration", str(tmp_path / "empty")], f"--calibration {tmp_path / 'empty'}: no images"),
        ([], "--int8 needs --calibration DIR"),
    ):
        result = CliRunner().invoke(
            app, ["export", "--checkpoint", str(ckpt), "--out", str(out), "--int8", *extra]
        )
        assert isinstance(result.exception, OccreidError), result.output
        assert message in str(result.exception)
        assert not out.exists()


def test_dynamic_int8_quantises_a_vits_products_and_refuses_a_cnn(exported, tmp_path):
    """Dynamic int8 needs no calibration and quantises only products with weights: ONNX Runtime's dynamic
    convolutions wrecked CNN features, so a CNN, with nothing else to quantise, is refused."""
    from occreid.config import load_config
    from occreid.inference.models import load_inference_model
    from occreid.methods import build_model
    from occreid.modeling.checkpoint import save_checkpoint

    cnn, _, _ = exported
    config = Path(__file__).parents[1] / "occreid/configs/demo/vit_baseline.yaml"
    cfg = load_config(config, ["model.pretrained=false"])
    torch.manual_seed(0)
    vit = tmp_path / "vit" / "best.pt"
    vit.parent.mkdir()
    state = build_model(cfg, num_classes=4).state_dict()
    save_checkpoint(vit, {"model": state, "config": cfg.model_dump(mode="json"), "num_classes": 4})
    runner, dynamic = CliRunner(), ["--int8", "--quantization", "dynamic"]
    fp32, int8 = tmp_path / "vit.onnx", tmp_path / "vit-int8.onnx"
    assert runner.invoke(app, ["export", "--checkpoint", str(vit), "--out", str(fp32)]).exit_code == 0
    result = runner.invoke(app, ["export", "--checkpoint", str(vit), "--out", str(int8), *dynamic])
    assert result.exit_code == 0, result.output
    assert f"wrote {int8}: int8 (dynamic)" in result.output and "img/s" in result.output
    ops = {node.op_type for node in onnx.load(str(int8)).graph.node}
    assert "MatMulInteger" in ops and "ConvInteger" not in ops
    quantised, reference = load_inference_model(int8), load_inference_model(fp32)
    assert quantised.precision == "int8"
    images = torch.from_numpy(np.random.default_rng(1).uniform(-2, 2, (8, 3, 128, 64)).astype(np.float32))
    a, b = quantised.model(images), reference.model(images)
    assert torch.nn.functional.cosine_similarity(a, b).min() > 0.99 and (a - b).abs().max() > 0

    export = ["export", "--checkpoint", str(cnn), "--out", str(tmp_path / "cnn.onnx")]
    for extra, message in (
        (dynamic, "--quantization dynamic found no matrix product with weights to quantise"),
        (["--int8", "--quantization", "fp8"], "--quantization fp8: unknown; use static or dynamic"),
        (["--quantization", "dynamic"], "--calibration, --quantization and --check-root are for --int8"),
    ):
        result = runner.invoke(app, [*export, *extra])
        assert isinstance(result.exception, OccreidError) and message in str(result.exception)
        assert not (tmp_path / "cnn.onnx").exists()


def test_broken_foreign_and_wrong_runtime_onnx_files(exported, tmp_path):
    from occreid.inference.models import load_inference_model

    _, onnx_path, _ = exported
    corrupted = tmp_path / "corrupted.onnx"
    corrupted.write_bytes(onnx_path.read_bytes()[:5000])
    with pytest.raises(OccreidError, match="corrupted.onnx is not a readable ONNX model"):
        load_inference_model(corrupted)
    foreign = tmp_path / "foreign.onnx"
    model = onnx.load(str(onnx_path))
    del model.metadata_props[:]
    onnx.save(model, str(foreign))
    with pytest.raises(
        OccreidError, match="foreign.onnx has no occreid metadata.*occreid export --checkpoint"
    ):
        load_inference_model(foreign)
    with pytest.raises(OccreidError, match="--runtime torch cannot run .*model.onnx"):
        load_inference_model(onnx_path, runtime="torch")
    # through the command line: one line, exit status 2, no traceback
    import subprocess
    import sys

    _, _, market = exported
    commands = (
        ["index", "build", "--checkpoint", str(corrupted), "--images", str(market / "query")],
        ["eval", "--checkpoint", str(foreign), "--dataset", "market1501", "--root", str(market)],
    )
    for command in commands:
        result = subprocess.run(
            [sys.executable, "-m", "occreid", *command, "--out", str(tmp_path / "out.npz")],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.filterwarnings("ignore:Specified provider 'CUDAExecutionProvider'")  # onnxruntime's own note
def test_cuda_provider_choice_and_a_cuda_provider_that_does_not_start(exported, monkeypatch):
    """`cuda:N` runs on GPU N; a GPU asked for by name must really run: ONNX Runtime falls back to the CPU
    when its CUDA provider cannot start, as here, where the provider is listed but this build has none."""
    from occreid.inference.onnx_model import OnnxModel, providers_for

    _, onnx_path, _ = exported
    assert providers_for("cpu") == ["CPUExecutionProvider"]
    assert providers_for("auto") == ["CPUExecutionProvider"]  # this build has no CUDA provider
    with pytest.raises(OccreidError, match="--device cuda:1: this onnxruntime has no CUDA provider"):
        providers_for("cuda:1")
    with pytest.raises(OccreidError, match="--device tpu: ONNX Runtime runs on auto, cpu, cuda or cuda:N"):
        providers_for("tpu")

    monkeypatch.setattr(
        ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    cuda = "CUDAExecutionProvider"
    assert providers_for("cuda:1") == [(cuda, {"device_id": 1}), "CPUExecutionProvider"]
    assert providers_for(torch.device("cuda", 2)) == [(cuda, {"device_id": 2}), "CPUExecutionProvider"]
    assert (
        providers_for("auto") == providers_for("cuda") == [(cuda, {"device_id": 0}), "CPUExecutionProvider"]
    )
    with pytest.raises(OccreidError, match="--device cuda: ONNX Runtime could not start its CUDA provider"):
        OnnxModel(onnx_path, device="cuda")
    model = OnnxModel(onnx_path, device="auto")  # auto may fall back to the CPU
    assert model.session.get_providers() == ["CPUExecutionProvider"]
    assert model(torch.zeros(1, 3, 64, 32)).shape[0] == 1
