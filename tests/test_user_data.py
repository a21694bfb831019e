"""Nothing a user owns is lost, bad input always gets one clear line, long work shows its progress.

Most tests run the real entry point (`python -m occreid ...`, tests/test_cli.py's `run`) and check the exit
status, the one `error:` line and that no traceback is shown; the data-loss tests put a real-looking folder or
run in the way and check every byte is still there afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_cli import assert_user_error, run
from typer.testing import CliRunner

from occreid.errors import OccreidError

TINY = [
    "data.image_size=[64,32]",
    "data.p=4",
    "data.k=4",
    "data.num_workers=0",
    "data.pad=4",
    "model.name=baseline",
    "model.backbone=resnet18",
    "model.pretrained=false",
    "train.epochs=1",
    "train.steps_per_epoch=2",
    "train.warmup_epochs=0",
    "train.milestones=[100]",
    "train.eval_period=0",
    "train.log_period=1",
    "train.device=cpu",
    "eval.batch_size=64",
]


def sets(*overrides: str) -> list[str]:
    out = []
    for o in [*TINY, *overrides]:
        out += ["--set", o]
    return out


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (relative path -> bytes)."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    from occreid.data.synthocc import generate

    root = tmp_path_factory.mktemp("synth") / "synthocc"
    generate(root, preset="small", seed=0, protocol="occluded", workers=2, progress=False)
    return root


@pytest.fixture(scope="module")
def tiny_run(synth_root, tmp_path_factory) -> Path:
    """A finished 1-epoch run (baseline, ResNet-18 at 64 x 32): its run directory."""
    from occreid.config import load_config
    from occreid.engine.trainer import train

    out = tmp_path_factory.mktemp("run") / "run"
    train(load_config(None, [*TINY, f"data.root={synth_root}", f"train.output_dir={out}"]), progress=False)
    return out


def copy_dataset(synth_root: Path, dest: Path) -> Path:
    shutil.copytree(synth_root, dest)
    return dest


# ----------------------------------------------------------------------------------------------------------
# 1. train into an existing run directory


def test_train_never_overwrites_a_run_silently(synth_root, tmp_path):
    run_dir = tmp_path / "runs" / "synthocc" / "baseline"
    args = ["train", *sets(f"data.root={synth_root}"), "--output-dir", str(run_dir)]
    first = run(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    (run_dir / "notes.txt").write_text("my notes on this run")
    before = snapshot(run_dir)
    assert {"last.pt", "metrics.jsonl", "config.yaml", "eval.json", "notes.txt"} <= set(before)

    # the preset rerun with one --set changed: refused, every byte kept
    again = run(*args, "--set", "train.lr=1e-3", cwd=tmp_path)
    assert_user_error(again, str(run_dir), "already holds a run", "--resume auto", "--overwrite")
    assert snapshot(run_dir) == before

    # --overwrite replaces the run's own files and nothing else (--resume auto continues it: see
    # test_resume_auto_survives_a_partial_last_metrics_line and tests/test_training.py)
    replaced = run(*args, "--overwrite", "--set", "train.steps_per_epoch=1", cwd=tmp_path)
    assert replaced.returncode == 0, replaced.stderr[-2000:]
    assert torch.load(run_dir / "last.pt", weights_only=True)["step"] == 1
    assert (run_dir / "notes.txt").read_text() == "my notes on this run"
    assert_user_error(run(*args, "--overwrite", "--resume", "auto", cwd=tmp_path), "--resume", "--overwrite")


def test_resuming_another_folders_checkpoint_into_a_run_is_refused_too(tmp_path):
    from occreid.engine.rundir import check_run_dir

    run_dir, other = tmp_path / "run", tmp_path / "other"
    run_dir.mkdir()
    (run_dir / "last.pt").write_bytes(b"this run")
    check_run_dir(run_dir, "auto", overwrite=False)  # continue it
    check_run_dir(run_dir, str(run_dir / "last.pt"), overwrite=False)
    with pytest.raises(OccreidError, match="already holds a run"):
        check_run_dir(run_dir, str(other / "last.pt"), overwrite=False)  # would replace this run with another
    check_run_dir(run_dir, str(other / "last.pt"), overwrite=True)
    check_run_dir(tmp_path / "new", str(other / "last.pt"), overwrite=False)


# ----------------------------------------------------------------------------------------------------------
# 2. synth --force on a folder SynthOcc did not write; the advice for a real Market-1501 folder


def market_like(root: Path) -> Path:
    for d, name in (
        ("bounding_box_train", "0002_c1s1_000451_03.jpg"),
        ("query", "0003_c1s1_000551_01.jpg"),
        ("bounding_box_test", "0003_c2s1_000651_02.jpg"),
    ):
        (root / d).mkdir(parents=True)
        Image.new("RGB", (64, 128), (120, 30, 60)).save(root / d / name)
    (root / "keypoints.npz").write_bytes(b"my own keypoints, not SynthOcc's")
    (root / "readme.txt").write_text("Market-1501, the only copy")
    return root


def test_synth_force_never_deletes_a_dataset_it_did_not_write(tmp_path):
    root = market_like(tmp_path / "Market-1501")
    before = snapshot(root)
    for flag in ("--force", "--overwrite"):
        result = run("synth", "--out", str(root), "--preset", "small", flag, cwd=tmp_path)
        assert_user_error(result, str(root), "did not write", "nothing was deleted")
        assert snapshot(root) == before
    # training with data.dataset left at synthocc points to the right fix, not to `synth --force`
    result = run("train", "--set", f"data.root={root}", "--output-dir", str(tmp_path / "run"), cwd=tmp_path)
    line = assert_user_error(result, "data.dataset=market1501")
    assert "--force" not in line and "--overwrite" not in line
    assert snapshot(root) == before


def test_synth_overwrite_replaces_its_own_dataset_complete_or_interrupted(tmp_path):
    from occreid.data.synthocc import generate
    from occreid.data.synthocc.generate import STARTED_MARKER

    out = tmp_path / "s"
    generate(out, preset="small", seed=0, workers=1, progress=False)
    assert not (out / STARTED_MARKER).exists()
    (out / "synthocc.json").unlink()  # as if interrupted before the end ...
    (out / STARTED_MARKER).write_text("")  # ... by a version that marks its start
    info = generate(out, preset="small", seed=1, workers=1, progress=False, force=True)
    assert info["seed"] == 1 and (out / "synthocc.json").is_file() and not (out / STARTED_MARKER).exists()


# ----------------------------------------------------------------------------------------------------------
# 3. demo --out with earlier runs in it


def test_demo_refuses_an_out_folder_with_earlier_runs(tmp_path):
    out = tmp_path / "demo"
    (out / "baseline").mkdir(parents=True)
    (out / "baseline" / "last.pt").write_bytes(b"a week of training")
    (out / "baseline" / "metrics.jsonl").write_text('{"step": 1}\n')
    (out / "results.json").write_text("{}")
    before = snapshot(out)
    result = run("demo", "--out", str(out), cwd=tmp_path)
    assert_user_error(result, str(out), "--overwrite", "baseline/last.pt")
    assert snapshot(out) == before and not (out / "synthocc").exists()


# ----------------------------------------------------------------------------------------------------------
# 4. export (parity failure, existing --out) and eval's results JSON


@pytest.fixture
def fake_deployed(monkeypatch, tmp_path):
    from occreid.config import load_config
    from occreid.inference import models as checkpoint
    from occreid.methods import build_model

    cfg = load_config(None, TINY)
    method = build_model(cfg, num_classes=4).eval()
    monkeypatch.setattr(checkpoint, "load_deployed_model", lambda path, device="cpu": (method.deploy(), cfg))
    ckpt = tmp_path / "last.pt"
    ckpt.write_bytes(b"stand-in")
    return ckpt


def test_export_removes_a_file_that_fails_verification(tmp_path, fake_deployed):
    from occreid.cli import app

    out = tmp_path / "m.onnx"
    result = CliRunner().invoke(
        app, ["export", "--checkpoint", str(fake_deployed), "--out", str(out), "--atol", "-1"]
    )
    assert isinstance(result.exception, OccreidError) and "deleted" in str(result.exception)
    assert "wrote" not in result.output
    assert list(tmp_path.glob("*onnx*")) == []  # neither m.onnx nor a partial file


def test_export_and_eval_refuse_to_overwrite_and_keep_every_byte(tiny_run, tmp_path):
    ckpt = tiny_run / "last.pt"
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"the model we shipped")
    assert_user_error(
        run("export", "--checkpoint", str(ckpt), "--out", str(onnx), cwd=tmp_path),
        str(onnx),
        "already exists",
        "--overwrite",
    )
    results = tmp_path / "results.json"
    results.write_text('{"mAP": 0.9}')
    assert_user_error(
        run("eval", "--checkpoint", str(ckpt), "--out", str(results), cwd=tmp_path),
        str(results),
        "already exists",
        "--overwrite",
    )
    assert onnx.read_bytes() == b"the model we shipped" and results.read_text() == '{"mAP": 0.9}'


# ----------------------------------------------------------------------------------------------------------
# 5. save before evaluating; every image readable before long work starts


def test_the_epoch_is_saved_before_evaluation(synth_root, tmp_path, monkeypatch):
    from occreid.config import load_config
    from occreid.engine import trainer

    def failing_eval(*args, **kwargs):
        raise OccreidError("cannot read image gallery/x.jpg")

    monkeypatch.setattr(trainer, "evaluate_model", failing_eval)
    cfg = load_config(None, [*TINY, f"data.root={synth_root}", f"train.output_dir={tmp_path / 'r'}"])
    with pytest.raises(OccreidError, match="gallery/x.jpg"):
        trainer.train(cfg, progress=False)
    assert torch.load(tmp_path / "r" / "last.pt", weights_only=True)["epoch"] == 1


def test_unreadable_images_are_counted_with_examples_before_training(synth_root, tmp_path):
    root = copy_dataset(synth_root, tmp_path / "data")
    gallery = sorted((root / "bounding_box_test").glob("*.jpg"))
    gallery[3].write_bytes(gallery[3].read_bytes()[:300])  # truncated mid-image
    gallery[7].write_bytes(b"")
    result = run("train", *sets(f"data.root={root}"), "--output-dir", str(tmp_path / "run"), cwd=tmp_path)
    assert_user_error(result, "2 of", "gallery images cannot be read", gallery[3].name, gallery[7].name)
    assert not (tmp_path / "run" / "last.pt").exists() and not (tmp_path / "run" / "metrics.jsonl").exists()


# ----------------------------------------------------------------------------------------------------------
# 6. an index knows its model by content hash


def test_index_identifies_its_model_by_content_hash(tmp_path, monkeypatch):
    import occreid.cli.evaluation as cli_eval
    from occreid.cli import app
    from occreid.config import Config
    from occreid.evaluation.index import GalleryIndex

    cfg = Config()
    cfg.data.image_size = (32, 16)
    cfg.model.test_feature = "f_P"  # what the config names; the deployed model computes f_G regardless
    model = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d((2, 2)), torch.nn.Flatten())
    from occreid.inference.models import InferenceModel

    monkeypatch.setattr(
        cli_eval, "_load_model", lambda ckpt, *_: InferenceModel.from_config(model, cfg, ckpt)
    )
    ckpt = tmp_path / "run" / "last.pt"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"weights of epoch 10")
    (tmp_path / "gallery").mkdir()
    (tmp_path / "more").mkdir()
    Image.new("RGB", (20, 40), (200, 0, 0)).save(tmp_path / "gallery" / "a.jpg")
    Image.new("RGB", (20, 40), (0, 200, 0)).save(tmp_path / "more" / "b.jpg")
    query = tmp_path / "q.jpg"
    Image.new("RGB", (20, 40), (190, 0, 0)).save(query)
    index = tmp_path / "index.npz"
    runner = CliRunner()
    ok = runner.invoke(
        app,
        [
            "index",
            "build",
            "--checkpoint",
            str(ckpt),
            "--images",
            str(tmp_path / "gallery"),
            "--out",
            str(index),
            "--device",
            "cpu",
        ],
    )
    assert ok.exit_code == 0, ok.output
    meta = GalleryIndex.load(index).meta
    assert meta["feature"] == "f_G" and "test_feature" not in meta and len(meta["checkpoint_sha256"]) == 64

    ckpt.write_bytes(b"weights of epoch 20")  # new weights at the same path
    for args in (
        ["search", "--index", str(index), "--image", str(query)],
        ["index", "add", "--index", str(index), "--images", str(tmp_path / "more")],
    ):
        result = runner.invoke(app, [*args, "--device", "cpu"])
        assert isinstance(result.exception, OccreidError), result.output
        assert "content hash differs" in str(result.exception)
    assert len(GalleryIndex.load(index)) == 1  # nothing mixed in

    moved = tmp_path / "moved" / "last.pt"  # the original weights, in a moved run folder
    moved.parent.mkdir()
    moved.write_bytes(b"weights of epoch 10")
    ckpt.unlink()
    result = runner.invoke(app, ["search", "--index", str(index), "--image", str(query), "--device", "cpu"])
    assert isinstance(result.exception, OccreidError) and "pass --checkpoint" in str(result.exception)
    for args in (
        ["search", "--index", str(index), "--image", str(query)],
        ["index", "add", "--index", str(index), "--images", str(tmp_path / "more")],
    ):
        result = runner.invoke(app, [*args, "--checkpoint", str(moved), "--device", "cpu"])
        assert result.exit_code == 0, result.output
    assert len(GalleryIndex.load(index)) == 2


# ----------------------------------------------------------------------------------------------------------
# 7. checkpoint temp files


def test_checkpoint_save_fsyncs_before_the_rename_and_removes_stale_temp_files(tmp_path, monkeypatch):
    from occreid.modeling import checkpoint
    from occreid.utils import files

    stale = tmp_path / "last.pt8x2k1abc.tmp"  # what a kill during torch.save leaves
    stale.write_bytes(b"\0" * 1000)
    other = tmp_path / "notes.tmp"
    other.write_text("not ours")
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(files.os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(files.os, "replace", lambda a, b: (events.append("replace"), real_replace(a, b))[1])
    checkpoint.save_checkpoint(tmp_path / "last.pt", {"model": {}})
    assert not stale.exists() and other.exists()
    assert events.index("fsync") < events.index("replace")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "notes.tmp"]


# ----------------------------------------------------------------------------------------------------------
# 8. a checkpoint of another model, backbone or dataset


def test_resume_or_eval_with_a_checkpoint_of_another_model(synth_root, tiny_run, tmp_path):
    ckpt = tiny_run / "last.pt"
    result = run(
        "train",
        *sets(f"data.root={synth_root}", "model.backbone=resnet34"),
        "--resume",
        str(ckpt),
        "--output-dir",
        str(tmp_path / "r"),
        cwd=tmp_path,
    )
    assert_user_error(result, str(ckpt), "model.backbone='resnet34' (the run's: 'resnet18')")  # settings kept
    result = run("eval", "--checkpoint", str(ckpt), "--set", "model.backbone=resnet34", cwd=tmp_path)
    assert_user_error(result, str(ckpt), "model.backbone=resnet18 (config: resnet34)")


def test_resume_with_a_checkpoint_of_another_dataset(synth_root, tiny_run, tmp_path):
    from occreid.config import load_config
    from occreid.data.datasets import load_dataset
    from occreid.methods import build_model
    from occreid.modeling.checkpoint import load_checkpoint, load_weights

    state = load_checkpoint(tiny_run / "last.pt")
    cfg = load_config(None, [*TINY, "data.dataset=market1501"])
    method = build_model(cfg, num_classes=751)
    with pytest.raises(OccreidError, match=r"data.dataset=synthocc \(config: market1501\).*751"):
        load_weights(method, state, tiny_run / "last.pt", cfg, num_classes=751)
    assert load_dataset("synthocc", synth_root).num_train_pids == state["num_classes"]


# ----------------------------------------------------------------------------------------------------------
# 9. truncated or empty .npz files; 12. NaN keypoints


def test_truncated_or_empty_npz_files_are_one_line(synth_root, tmp_path):
    from occreid.evaluation.index import GalleryIndex

    index = GalleryIndex(meta={"checkpoint": "x.pt"})
    index.add(np.ones((3, 4)), ["a", "b", "c"])
    index.save(tmp_path / "good.npz")
    data = (tmp_path / "good.npz").read_bytes()
    (tmp_path / "truncated.npz").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.npz").write_bytes(b"")
    query = tmp_path / "q.jpg"
    Image.new("RGB", (20, 40)).save(query)
    for name, words in (("truncated.npz", "truncated"), ("empty.npz", "empty")):
        result = run("search", "--index", str(tmp_path / name), "--image", str(query), cwd=tmp_path)
        assert_user_error(result, name, words)
        assert "Aborted" not in result.stderr
    kp = (synth_root / "keypoints.npz").read_bytes()
    (tmp_path / "kp_truncated.npz").write_bytes(kp[: len(kp) // 2])
    (tmp_path / "kp_empty.npz").write_bytes(b"")
    for name, words in (("kp_truncated.npz", "truncated"), ("kp_empty.npz", "empty")):
        result = run(
            "train",
            *sets(f"data.root={synth_root}", "model.name=pgfl_kd", f"data.keypoints={tmp_path / name}"),
            "--output-dir",
            str(tmp_path / "r"),
            cwd=tmp_path,
        )
        assert_user_error(result, name, words)


def test_nan_keypoints_are_rejected_when_the_store_loads(synth_root, tmp_path):
    from occreid.pose.store import KeypointStore

    store = KeypointStore.load(synth_root / "keypoints.npz")
    names = sorted(store.keypoints)[:2]
    for name in names:
        store.keypoints[name] = store.keypoints[name].copy()
        store.keypoints[name][5, 0] = np.nan
    store.save(tmp_path / "nan.npz")
    with pytest.raises(OccreidError, match=r"2 of \d+ images have NaN"):
        KeypointStore.load(tmp_path / "nan.npz")
    result = run(
        "train",
        *sets(f"data.root={synth_root}", "model.name=pgfl_kd", f"data.keypoints={tmp_path / 'nan.npz'}"),
        "--output-dir",
        str(tmp_path / "r"),
        cwd=tmp_path,
    )
    line = assert_user_error(result, "nan.npz", "NaN", names[0])
    assert "train.lr" not in line


# ----------------------------------------------------------------------------------------------------------
# 10. a partial last line in metrics.jsonl


def test_resume_auto_survives_a_partial_last_metrics_line(synth_root, tiny_run, tmp_path):
    from occreid.config import load_config
    from occreid.engine.trainer import train

    out = copy_dataset(tiny_run, tmp_path / "r")  # a finished 1-epoch run
    with (out / "metrics.jsonl").open("a") as f:
        f.write('{"kind": "train", "epoch": 2, "st')  # the crash mid-write
    result = train(
        load_config(None, [*TINY, f"data.root={synth_root}", f"train.output_dir={out}", "train.epochs=2"]),
        resume="auto",
        progress=False,
    )
    assert result.steps == 4
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2, 3, 4]


# ----------------------------------------------------------------------------------------------------------
# 11 and 13. range checks


@pytest.mark.parametrize(
    "override, words",
    [
        ("data.p=1", ["'data.p'", ">= 2", "triplet"]),
        ("data.k=1", ["'data.k'", ">= 2", "triplet"]),
        ("train.lr=-0.1", ["'train.lr'", "greater than 0"]),
        ("data.image_size=[0,32]", ["'data.image_size.0'", "greater than 0"]),
        ("data.num_workers=-1", ["'data.num_workers'"]),
        ("eval.batch_size=0", ["'eval.batch_size'"]),
        ("data.erasing_prob=1.5", ["'data.erasing_prob'", "less than or equal to 1"]),
        ("train.warmup_epochs=-1", ["'train.warmup_epochs'"]),
        ("pose.sigma=-1", ["'pose.sigma'"]),
        ("train.epochs=0", ["'train.epochs'"]),
    ],
)
def test_out_of_range_settings_name_the_key(tmp_path, override, words):
    result = run("train", "--set", override, cwd=tmp_path)
    assert_user_error(result, *words)
    assert not (tmp_path / "runs").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_a_gpu_is_one_line(synth_root, tiny_run, tmp_path):
    result = run(
        "train",
        *sets(f"data.root={synth_root}", "train.device=cuda"),
        "--output-dir",
        str(tmp_path / "r"),
        cwd=tmp_path,
    )
    assert_user_error(result, "train.device=cuda", "no CUDA GPU")
    (tmp_path / "g").mkdir()
    Image.new("RGB", (20, 40)).save(tmp_path / "g" / "a.jpg")
    result = run(
        "index",
        "build",
        "--checkpoint",
        str(tiny_run / "last.pt"),
        "--images",
        str(tmp_path / "g"),
        "--out",
        str(tmp_path / "i.npz"),
        "--device",
        "cuda",
        cwd=tmp_path,
    )
    assert_user_error(result, "--device=cuda", "no CUDA GPU")


# ----------------------------------------------------------------------------------------------------------
# 14. unwritable output paths are refused before the work starts


def test_unwritable_outputs_are_refused_before_any_work(synth_root, tiny_run, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    ckpt = str(tiny_run / "last.pt")
    (tmp_path / "g").mkdir()
    Image.new("RGB", (20, 40)).save(tmp_path / "g" / "a.jpg")
    cases = {
        "train.output_dir": ["train", *sets(f"data.root={synth_root}"), "--output-dir", str(blocker / "run")],
        "eval": ["eval", "--checkpoint", ckpt, "--out", str(blocker / "r.json")],
        "index": [
            "index",
            "build",
            "--checkpoint",
            ckpt,
            "--images",
            str(tmp_path / "g"),
            "--out",
            str(blocker / "i.npz"),
        ],
        "synth": ["synth", "--out", str(blocker / "s"), "--preset", "small"],
        "export": ["export", "--checkpoint", ckpt, "--out", str(blocker / "m.onnx")],
    }
    for name, args in cases.items():
        result = run(*args, cwd=tmp_path)
        line = assert_user_error(result, str(blocker))
        assert "opset" not in line and "epoch" not in result.stdout, (name, line)
    assert blocker.read_text() == "a file where a folder should be"


# ----------------------------------------------------------------------------------------------------------
# 15. images over PIL's decompression-bomb limit


def bomb_png(path: Path, side: int = 30_000) -> Path:
    """A tiny file whose header claims side x side pixels: PIL refuses it at open (over 2 x
    MAX_IMAGE_PIXELS)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 16))
        + chunk(b"IEND", b"")
    )
    return path


def test_decompression_bombs_are_one_line_also_in_a_loader_worker(synth_root, tmp_path):
    from occreid.config import load_config
    from occreid.data.datasets import load_dataset
    from occreid.data.loaders import build_test_loader

    root = copy_dataset(synth_root, tmp_path / "data")
    bomb = bomb_png(sorted((root / "query").glob("*.jpg"))[0])
    ds = load_dataset("synthocc", root)
    loader = build_test_loader(load_config(None, [*TINY, "data.num_workers=1"]), ds.query)
    with pytest.raises(OccreidError, match=r"decompression bomb") as info:
        for _ in loader:
            pass
    assert "\n" not in str(info.value) and bomb.name in str(info.value)
    result = run("train", *sets(f"data.root={root}"), "--output-dir", str(tmp_path / "r"), cwd=tmp_path)
    assert_user_error(result, bomb.name, "exceeds limit")


# ----------------------------------------------------------------------------------------------------------
# 16. eval --root without --dataset


def test_eval_root_without_dataset_evaluates_that_root(synth_root, tiny_run, tmp_path):
    missing = tmp_path / "nowhere"
    assert_user_error(
        run("eval", "--checkpoint", str(tiny_run / "last.pt"), "--root", str(missing), cwd=tmp_path),
        str(missing),
    )
    other = copy_dataset(synth_root, tmp_path / "copy")
    out = tmp_path / "r.json"
    result = run(
        "eval",
        "--checkpoint",
        str(tiny_run / "last.pt"),
        "--root",
        str(other),
        "--out",
        str(out),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(out.read_text())["root"] == str(other)


# ----------------------------------------------------------------------------------------------------------
# 17. error texts; Ctrl-C; a folder as --checkpoint


def test_a_folder_as_checkpoint_names_the_files_in_it(tiny_run, tmp_path):
    for args in (["eval"], ["export", "--out", str(tmp_path / "m.onnx")]):
        result = run(*args, "--checkpoint", str(tiny_run), cwd=tmp_path)
        assert_user_error(result, str(tiny_run), "is a folder", "last.pt")


def test_torch_errors_are_complete_sentences(tiny_run, tmp_path):
    data = (tiny_run / "last.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 3])
    line = assert_user_error(
        run("eval", "--checkpoint", str(tmp_path / "cut.pt"), cwd=tmp_path), "cut.pt", "truncated"
    )
    assert line.endswith("central directory.)")


def test_ctrl_c_says_what_happened_and_exits_130(tmp_path):
    out = tmp_path / "s"
    # pytest-xdist's workers ignore SIGINT, and a child inherits that: give the command the default
    # disposition, as a shell would, so Python turns Ctrl-C into KeyboardInterrupt.
    proc = subprocess.Popen(
        [sys.executable, "-m", "occreid", "synth", "--out", str(out), "--workers", "1"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + 60
    while not any((out / "query").glob("*.jpg")) and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "Traceback" not in err and "interrupted (Ctrl-C)" in err


# ----------------------------------------------------------------------------------------------------------
# A pickle planted where each loader looks never runs


class Payload:
    """Unpickling this creates the file `sentinel`: proof that the pickle ran."""

    def __init__(self, sentinel: Path):
        self.sentinel = str(sentinel)

    def __reduce__(self):
        return (open, (self.sentinel, "w"))


def _plant_npz(path: Path, sentinel: Path, **arrays) -> None:
    obj = np.empty(1, dtype=object)
    obj[0] = Payload(sentinel)
    with open(path, "wb") as f:
        np.savez(f, **{name: obj for name in arrays})


LOADERS = ["checkpoint", "model.pretrained", "torch hub cache", "keypoint store", "index"]


@pytest.mark.parametrize("loader", LOADERS)
def test_a_planted_pickle_never_runs(loader, synth_root, tmp_path):
    sentinel = tmp_path / "PWNED"
    evil = tmp_path / "evil.pt"
    torch.save({"format": "occreid-checkpoint-v1", "model": Payload(sentinel)}, evil)
    env = None
    train = ["train", *sets(f"data.root={synth_root}"), "--output-dir", str(tmp_path / "r")]
    if loader == "checkpoint":
        args, names = ["eval", "--checkpoint", str(evil)], [str(evil), "pickled Python objects"]
    elif loader == "model.pretrained":
        args, names = (
            [*train, "--set", f"model.pretrained={evil}"],
            ["model.pretrained", "pickled Python objects"],
        )
    elif loader == "torch hub cache":
        import torchvision

        hub = tmp_path / "torch" / "hub" / "checkpoints"
        hub.mkdir(parents=True)
        shutil.copy(evil, hub / os.path.basename(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url))
        env = {**os.environ, "TORCH_HOME": str(tmp_path / "torch")}
        args, names = [*train, "--set", "model.pretrained=true"], ["ImageNet weights"]
    elif loader == "keypoint store":
        _plant_npz(tmp_path / "kp.npz", sentinel, paths=1, keypoints=1, meta=1)
        args = [*train, "--set", "model.name=pgfl_kd", "--set", f"data.keypoints={tmp_path / 'kp.npz'}"]
        names = ["kp.npz", "pickled Python objects"]
    else:
        _plant_npz(tmp_path / "index.npz", sentinel, features=1, paths=1, header=1)
        Image.new("RGB", (20, 40)).save(tmp_path / "q.jpg")
        args = ["search", "--index", str(tmp_path / "index.npz"), "--image", str(tmp_path / "q.jpg")]
        names = ["index.npz", "pickled Python objects"]
    result = subprocess.run(
        [sys.executable, "-m", "occreid", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert not sentinel.exists(), f"the pickle planted in the {loader} ran"
    line = assert_user_error(result, *names)
    assert "weights_only set to False" not in line and "Re-running" not in line


# ----------------------------------------------------------------------------------------------------------
# Progress


def test_training_and_evaluation_progress_in_a_log_file_is_plain_lines(synth_root, tmp_path):
    env = {
        **os.environ,
        "OCCREID_PROGRESS_SECONDS": "0",
    }  # a line per step, as a long run prints every minute
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "occreid",
            "train",
            *sets(f"data.root={synth_root}", "train.log_period=50"),
            "--output-dir",
            str(tmp_path / "r"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "\r" not in result.stdout + result.stderr
    err = result.stderr.splitlines()
    assert "epoch 1/1: 1/2 steps (50%)" in result.stderr and "ETA" in result.stderr
    assert any(line.startswith("epoch 1/1: 2/2 steps (100%) in ") for line in err), err
    assert any(line.startswith("query: 1/1 batches (100%) in ") for line in err), err  # 60 images
    assert any(line.startswith("gallery: 3/3 batches (100%) in ") for line in err), err  # 180 images
    records = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    # log_period lines as before (step 1), and every epoch's last step (2)
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2]


def test_progress_is_a_bar_on_a_terminal_and_silent_when_disabled():
    import io

    from tqdm import tqdm

    from occreid.utils.progress import PlainProgress, progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    assert isinstance(progress(range(3), stream=Terminal()), tqdm)
    plain = io.StringIO()
    assert list(progress(range(3), desc="x", unit="img", stream=plain)) == [0, 1, 2]
    assert plain.getvalue().startswith("x: 3/3 img (100%) in 0:00:00")
    quiet = io.StringIO()
    bar = progress(range(3), stream=quiet, enabled=False)
    assert list(bar) == [0, 1, 2] and quiet.getvalue() == "" and isinstance(bar, PlainProgress)
