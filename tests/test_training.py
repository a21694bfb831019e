"""End-to-end training on tiny SynthOcc: overfitting, resume, NaN stop, DDP on gloo, the eval command."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from occreid.cli import app
from occreid.config import load_config
from occreid.engine.trainer import TrainingDiverged, train
from occreid.evaluation.evaluate import evaluate_model
from occreid.inference.models import load_method
from occreid.methods import demo_models
from occreid.modeling.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    from occreid.data.synthocc import generate as generate_synthocc

    root = tmp_path_factory.mktemp("synth") / "synthocc"
    generate_synthocc(root, preset="small", seed=0, protocol="occluded")
    return root


def _test_split(root: Path):
    from occreid.data.datasets import load_dataset

    ds = load_dataset("synthocc", root)
    return ds.query, ds.gallery


def tiny_cfg(root: Path, out: Path, *extra: str):
    return load_config(
        None,
        [
            "data.dataset=synthocc",
            f"data.root={root}",
            "data.image_size=[64,32]",
            "data.p=4",
            "data.k=4",
            "data.num_workers=0",
            "data.pad=4",
            "model.backbone=resnet18",
            "model.pretrained=false",
            "train.epochs=2",
            "train.steps_per_epoch=3",
            "train.warmup_epochs=0",
            "train.milestones=[100]",
            "train.eval_period=0",
            "train.log_period=1",
            "train.device=cpu",
            f"train.output_dir={out}",
            "eval.batch_size=64",
            *extra,
        ],
    )


def demo_model_cfg(key: str, root: Path, out: Path, *extra: str):
    """A demo model's config (its method's backbone) at the tiny size of `tiny_cfg`."""
    tiny = ["data.image_size=[64,32]", "data.p=4", "data.k=2", "data.num_workers=0", "model.pretrained=false"]
    tiny += ["model.vit_depth=2", "ogfr.agent_block=1", "ogfr.shared_blocks=1"]  # ViTs of 2 blocks
    schedule = ["train.epochs=2", "train.steps_per_epoch=2", "train.warmup_epochs=0", "train.eval_period=0"]
    paths = [f"data.root={root}", f"train.output_dir={out}", "train.log_period=1", "eval.batch_size=64"]
    return load_config(
        f"configs/demo/{key}.yaml", [*tiny, *schedule, *paths, "ogfr.agent_warmup_epochs=1", *extra]
    )


@pytest.mark.parametrize("model", [m.key for m in demo_models()])
def test_resume_after_interruption_gives_the_same_weights(synth_root, tmp_path, model):
    full = train(demo_model_cfg(model, synth_root, tmp_path / "full"), progress=False)
    # "Interrupted" after epoch 1, then resumed from its last checkpoint.
    train(demo_model_cfg(model, synth_root, tmp_path / "cut", "train.epochs=1"), progress=False)
    resumed = train(demo_model_cfg(model, synth_root, tmp_path / "cut"), resume="auto", progress=False)
    a = load_checkpoint(full.run_dir / "last.pt")
    b = load_checkpoint(resumed.run_dir / "last.pt")
    assert a["step"] == b["step"] == 4 and a["epoch"] == b["epoch"] == 2
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    # every optimiser's state too: the main one and a method's own (OGFR's agent, which learns from epoch 2)
    for name, opt in [("main", a["optimizer"]), *a["extra_optimizers"].items()]:
        other = b["optimizer"] if name == "main" else b["extra_optimizers"][name]
        assert opt["state"], f"{name} never stepped"
        for x, y in zip(opt["state"].values(), other["state"].values()):
            assert all(torch.equal(x[k], y[k]) for k in x), name
    # The run directory has what a user needs to reproduce and inspect the run.
    for name in ("config.yaml", "environment.json", "metrics.jsonl", "last.pt", "eval.json"):
        assert (full.run_dir / name).is_file(), name
    env = json.loads((full.run_dir / "environment.json").read_text())
    assert env["torch"] == torch.__version__
    terms = [json.loads(line) for line in (full.run_dir / "metrics.jsonl").read_text().splitlines()]
    train_terms = [t for t in terms if t["kind"] == "train"]
    assert len(train_terms) == 4 and all(np.isfinite(t["loss"]) and "grad_norm" in t for t in train_terms)
    if model == "pgfl_kd":
        assert {"cl", "mcl", "id_G", "id_E", "id_V"} <= set(train_terms[0])


def test_channels_last_trains_the_same_model(synth_root, tmp_path):
    """train.channels_last (the demo's setting) changes the memory layout only: the same first loss, later
    ones apart by rounding that training amplifies, and paired views (OGFR's occluded images) are converted
    with the images."""
    from occreid.engine.trainer import _to_device

    def losses(run_dir: Path) -> list[float]:
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
        return [r["loss"] for r in map(json.loads, lines) if r["kind"] == "train"]

    nchw = train(tiny_cfg(synth_root, tmp_path / "nchw"), progress=False)
    nhwc = train(tiny_cfg(synth_root, tmp_path / "nhwc", "train.channels_last=true"), progress=False)
    first, rest = losses(nhwc.run_dir), losses(nchw.run_dir)
    assert first[0] == pytest.approx(rest[0], rel=1e-5)  # same weights, data and layout-independent maths
    assert first[1:] == pytest.approx(rest[1:], rel=2e-2)  # rounding differences, amplified by training
    assert nhwc.last_eval["mAP"] == pytest.approx(nchw.last_eval["mAP"], abs=0.02)
    batch = {
        "images": torch.randn(2, 3, 8, 4),
        "occluded": torch.randn(2, 3, 8, 4),
        "pids": torch.arange(2),
        "occ_type": torch.zeros(2, dtype=torch.long),
    }
    moved = _to_device(batch, torch.device("cpu"), channels_last=True)
    for key in ("images", "occluded"):
        assert moved[key].is_contiguous(memory_format=torch.channels_last) and torch.equal(
            moved[key], batch[key]
        )
    assert torch.equal(moved["pids"], batch["pids"])


def test_tiny_run_overfits(synth_root, tmp_path, assert_overfits):
    """Train on 8 identities until the training loss falls and training-set rank-1 is near 1."""
    cfg = tiny_cfg(
        synth_root,
        tmp_path / "fit",
        "model.name=pgfl_kd",
        "train.epochs=15",
        "train.steps_per_epoch=4",
        "data.erasing_prob=0",
        "train.lr=1e-3",
        "data.p=8",
        "train.eval_period=100",
    )
    assert_overfits(cfg, synth_root)


def test_nan_loss_stops_with_the_step_number(synth_root, tmp_path, monkeypatch):
    import occreid.engine.trainer as modeling

    build = modeling.build_model

    def poisoned(cfg, num_classes):
        method = build(cfg, num_classes)
        step = method.training_step
        calls = {"n": 0}

        def training_step(batch):
            calls["n"] += 1
            terms = step(batch)
            if calls["n"] == 3:
                terms["id_G"] = terms["id_G"] * float("nan")
            return terms

        method.training_step = training_step
        return method

    monkeypatch.setattr(modeling, "build_model", poisoned)
    with pytest.raises(TrainingDiverged, match=r"at step 3 \(epoch 1\).*id_G=nan"):
        train(tiny_cfg(synth_root, tmp_path / "nan", "model.name=baseline"), progress=False)


DDP_METHODS = {
    # keypoints in the batch
    "pgfl_kd": ["model.name=pgfl_kd", "model.backbone=resnet18"],
    # paired holistic/occluded views in the batch and a second optimiser (the agent), learning from step 1
    "ogfr": [
        "model.name=ogfr",
        "model.backbone=vit_tiny_patch16",
        "model.vit_depth=2",
        "ogfr.pattern_block=1",
        "ogfr.agent_block=1",
        "ogfr.shared_blocks=1",
        "ogfr.agent_warmup_epochs=0",
    ],
}


@pytest.mark.parametrize("method", sorted(DDP_METHODS))
def test_ddp_two_processes_on_gloo_end_with_identical_weights(synth_root, tmp_path, method):
    out = tmp_path / "ddp"
    overrides = [
        "data.dataset=synthocc",
        f"data.root={synth_root}",
        "data.image_size=[64,32]",
        "data.p=4",
        "data.k=4",
        "data.num_workers=0",
        *DDP_METHODS[method],
        "model.pretrained=false",
        "train.epochs=1",
        "train.steps_per_epoch=2",
        "train.warmup_epochs=0",
        "train.device=cpu",
        "train.log_period=1",
        f"train.output_dir={out}",
    ]
    port = {"pgfl_kd": "29517", "ogfr": "29518"}[method]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        port,
        "-m",
        "occreid",
        "train",
    ]
    for o in overrides:
        cmd += ["--set", o]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    ddp = [r for r in records if r["kind"] == "ddp"]
    assert ddp and ddp[0]["world_size"] == 2
    assert ddp[0]["fingerprints"][0] == ddp[0]["fingerprints"][1]
    # The checkpoint rank 0 wrote holds those same weights.
    from occreid.utils.distributed import parameter_fingerprint

    method, _ = load_method(out / "last.pt")
    assert parameter_fingerprint(method) == pytest.approx(ddp[0]["fingerprints"][0], rel=1e-12)
    # The two ranks trained on disjoint batches: 2 steps per epoch each, 2 ranks.
    state = load_checkpoint(out / "last.pt")
    assert state["step"] == 2
    if method == "ogfr":  # the agent's own optimiser stepped on both ranks with the same averaged gradients
        assert state["extra_optimizers"]["agent"]["state"]
        train_records = [r for r in records if r["kind"] == "train"]
        assert all(r["rl"] != 0 for r in train_records) and {"feat", "logit", "pattern"} <= set(
            train_records[0]
        )
    # Evaluation gathered both ranks' features of one model (rank 0's BatchNorm statistics, which are also the
    # checkpoint's): it equals a single-process evaluation of the checkpoint.
    (ddp_eval,) = [r for r in records if r["kind"] == "eval"]
    cfg = load_config(None, overrides)
    single = evaluate_model(method, cfg, *_test_split(synth_root), torch.device("cpu")).result
    assert ddp_eval["mAP"] == pytest.approx(single.mAP, abs=1e-6)
    assert ddp_eval["rank1"] == pytest.approx(single.cmc[0], abs=1e-6)


def test_eval_command_prints_table_and_writes_settings(synth_root, tmp_path):
    result = train(
        tiny_cfg(synth_root, tmp_path / "run", "model.name=pgfl_kd", "train.epochs=1"), progress=False
    )
    runner = CliRunner()
    ckpt = result.run_dir / "last.pt"
    res = runner.invoke(
        app,
        [
            "eval",
            "--checkpoint",
            str(ckpt),
            "--set",
            "eval.rerank=true",
            "--set",
            "model.test_feature=f_E",
            "--out",
            str(tmp_path / "r.json"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "mAP" in res.output and "Rank-1" in res.output
    payload = json.loads((tmp_path / "r.json").read_text())
    s = payload["settings"]
    assert s["feature"] == "f_E" and s["metric"] == "euclidean"
    assert s["rerank"] == {"enabled": True, "k1": 20, "k2": 6, "lambda_value": 0.3}
    bad = runner.invoke(app, ["eval", "--checkpoint", str(tmp_path / "missing.pt")])
    assert bad.exit_code != 0


def test_missing_keypoints_are_an_error_or_no_pose_on_request(synth_root, tmp_path, capsys):
    from occreid.data.datasets import load_dataset
    from occreid.data.splits import keypoints_for
    from occreid.errors import OccreidError
    from occreid.pose.store import KeypointStore

    ds = load_dataset("synthocc", synth_root)
    store = KeypointStore.load(synth_root / "keypoints.npz")
    dropped = [ds.relpath(r) for r in ds.train[:2]]
    for relpath in dropped:
        del store.keypoints[relpath]
    store.save(tmp_path / "partial.npz")
    with pytest.raises(OccreidError, match=r"lacks 2 image\(s\)"):
        keypoints_for(ds, ds.train, str(tmp_path / "partial.npz"))
    kpts = keypoints_for(ds, ds.train, str(tmp_path / "partial.npz"), allow_missing=True)
    assert len(kpts) == len(ds.train)
    assert (kpts[0][:, 2] == 0).all() and (kpts[1][:, 2] == 0).all() and kpts[2][:, 2].max() > 0
    assert "lacks 2 of" in capsys.readouterr().out
    cfg = load_config(None, ["data.allow_missing_keypoints=true"])
    assert cfg.data.allow_missing_keypoints is True
