"""The checks of benchmarks/gpu_check.sh, one command each; every check prints lines starting "gpu_check".

    python benchmarks/gpu_check.py steps        # one paper-scale training step per method in fp32, TF32, bf16
    python benchmarks/gpu_check.py ogfr-fp16    # OGFR with fp16 (a GradScaler) through the agent's warm-up
    python benchmarks/gpu_check.py ddp WORKDIR  # 2 processes with OGFR's agent, then a resume on 1 process
    python benchmarks/gpu_check.py resume WORKDIR  # interrupted + resumed run against an uninterrupted one
    python benchmarks/gpu_check.py eval         # evaluation and re-ranking at Occluded-Duke size, GPU vs CPU

`--dry-run` runs the same code on the CPU at toy sizes (tests/test_gpu_check.py runs it), so a GPU machine's
time is not spent finding a typo. Without a GPU and without --dry-run a check fails with one line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from occreid.config import Config, load_config
from occreid.engine import trainer
from occreid.engine.optim import build_optimizers
from occreid.methods import build_model
from occreid.modeling.checkpoint import load_checkpoint
from occreid.utils.device import resolve_amp
from occreid.utils.distributed import DistInfo

PAPER = {  # the paper presets a GPU user trains, pretrained weights off (no download, no local file needed)
    "baseline": "configs/baseline.yaml",
    "pgfl_kd": "configs/pgfl_kd.yaml",
    "vit_baseline": "configs/vit_baseline.yaml",
    "ogfr": "configs/ogfr.yaml",
}
VITS = {"vit_baseline", "ogfr"}
PRECISIONS = {
    "fp32": ["train.amp=none", "train.tf32=false"],
    "tf32": ["train.amp=none", "train.tf32=true"],
    "bf16": ["train.amp=bf16", "train.tf32=true"],
}
# Toy sizes for --dry-run: small backbones, tiny images and batches, ViTs of 2 blocks.
TOY = ["data.image_size=[64,32]", "data.p=4", "data.k=2", "model.vit_depth=2", "ogfr.pattern_block=1"]
TOY += ["ogfr.agent_block=1", "ogfr.shared_blocks=1", "data.num_workers=0"]


def say(name: str, text: str) -> None:
    print(f"gpu_check {name}: {text}", flush=True)


def device_for(dry: bool) -> torch.device:
    if dry:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise SystemExit("error: no CUDA GPU visible to torch; run with --dry-run for the CPU rehearsal")
    return torch.device("cuda:0")


def paper_config(method: str, extra: list[str], dry: bool) -> Config:
    overrides = ["model.pretrained=false", *extra]
    if dry:
        small = "model.backbone=vit_tiny_patch16" if method in VITS else "model.backbone=resnet18"
        overrides = [*TOY, small, "train.device=cpu", *overrides]
    return load_config(PAPER[method] if method in PAPER else method, overrides)


def random_batch(method: torch.nn.Module, cfg: Config, device: torch.device) -> dict[str, torch.Tensor]:
    """A P x K batch with what the method asks for (keypoints, occluded views), on `device`."""
    h, w = cfg.data.image_size
    p, k = cfg.data.p, cfg.data.k
    g = torch.Generator().manual_seed(0)
    images = torch.randn(p * k, 3, h, w, generator=g)
    batch = {
        "images": images,
        "pids": torch.arange(p).repeat_interleave(k),
        "camids": torch.zeros(p * k).long(),
    }
    needs = method.batch_needs()
    if needs.keypoints:
        kpts = torch.rand(p * k, 17, 3, generator=g) * torch.tensor([w, h, 1.0])
        batch["keypoints"] = kpts
    if needs.paired_views:
        mask = torch.zeros(p * k, 1, h, w)
        mask[:, :, h // 2 :] = 1.0
        batch.update(occluded=images * (1 - mask), occ_mask=mask, occ_type=torch.ones(p * k).long())
    return {key: v.to(device) for key, v in batch.items()}


def step_run(cfg: Config, device: torch.device, scaler_on: bool | None = None) -> trainer.TrainingRun:
    """The trainer's state for `trainer._train_step` on one process, without data or a run folder."""
    info = DistInfo(device=device)
    trainer._configure_backends(cfg, info)
    torch.manual_seed(0)
    method = trainer._for_device(cfg, build_model(cfg, num_classes=cfg.data.p * 50).to(device), info)
    optimizer, extra = build_optimizers(cfg, method)
    fp16 = resolve_amp(cfg.train.amp, device) == "fp16"
    return trainer.TrainingRun(
        cfg=cfg,
        info=info,
        run_dir=None,
        dataset=None,
        test_set=None,
        test_keypoints=(None, None),
        method=method,
        loader=None,
        optimizer=optimizer,
        extra_optimizers=extra,
        scheduler=None,
        scaler=torch.amp.GradScaler(device.type, enabled=fp16 if scaler_on is None else scaler_on),
        step_module=trainer._step_module(method, info),
    )


def check_steps(dry: bool) -> None:
    """ms per step (median of the timed steps after warm-up) and peak GPU memory, per method and precision."""
    device = device_for(dry)
    warmup, timed = (1, 1) if dry else (3, 10)
    for method in PAPER:
        for precision, extra in PRECISIONS.items():
            cfg = paper_config(method, extra, dry)
            run = step_run(cfg, device)
            batch = random_batch(run.method, cfg, device)
            run.method.train()
            times = []
            for i in range(warmup + timed):
                if device.type == "cuda":
                    torch.cuda.synchronize()
                    if i == warmup:
                        torch.cuda.reset_peak_memory_stats()
                start = time.perf_counter()
                loss, _, _ = trainer._train_step(run, batch, epoch=0)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - start)
            peak = f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB" if device.type == "cuda" else "n/a"
            ms = 1000 * float(np.median(times[warmup:]))
            (h, w), b = cfg.data.image_size, cfg.data.p * cfg.data.k
            size = f"{cfg.model.backbone} {h}x{w} batch {b}"
            say(
                f"step {method} {precision}",
                f"{ms:.1f} ms/step, peak {peak} ({size}, loss {loss.item():.3f})",
            )
            del run, batch
            if device.type == "cuda":
                torch.cuda.empty_cache()


def check_ogfr_fp16(dry: bool) -> None:
    """OGFR with fp16 autocast and its GradScaler, agent warm-up 1 epoch: the agent stays put in epoch 1 and
    learns in epoch 2. On the CPU (--dry-run) bf16 with an enabled GradScaler stands in for fp16."""
    device = device_for(dry)
    amp = "train.amp=bf16" if dry else "train.amp=fp16"
    cfg = paper_config("ogfr", [amp, "ogfr.agent_warmup_epochs=1", "data.p=4", "data.k=4"], dry)
    run = step_run(cfg, device, scaler_on=True)
    batch = random_batch(run.method, cfg, device)
    agent = run.method.agent

    def agent_weights() -> torch.Tensor:
        return torch.cat([p.detach().flatten().float().cpu() for p in agent.parameters()])

    before = agent_weights()
    for epoch in (0, 1):
        run.method.set_epoch(epoch)
        run.method.train()
        for _ in range(2):
            loss, terms, _ = trainer._train_step(run, batch, epoch)
        moved = float((agent_weights() - before).abs().max())
        if epoch == 0 and moved != 0:
            raise SystemExit(f"error: the agent moved during its warm-up (max |dw| = {moved:.3g})")
    if moved == 0:
        raise SystemExit("error: the agent did not learn after its warm-up")
    scale = run.scaler.get_scale()
    say(
        "ogfr fp16 agent warm-up",
        f"ok: 4 steps, loss {loss.item():.3f}, loss scale {scale:g}, agent max |dw| {moved:.3g}",
    )


def _torchrun(nproc: int, overrides: list[str]) -> None:
    """`occreid train` under torchrun; a failure ends the check with the command's last line."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc)]
    cmd += ["--master_port", "29561", "-m", "occreid", "train"]
    for o in overrides:
        cmd += ["--set", o]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or proc.stdout.strip().splitlines() or ["?"])[-1]
        raise SystemExit(f"error: torchrun --nproc_per_node {nproc} -m occreid train failed: {last}")


def _train(overrides: list[str], resume: bool = False) -> None:
    """`occreid train` in this process."""
    trainer.train(load_config(None, overrides), resume="auto" if resume else None, progress=False)


def synth_data(workdir: Path) -> Path:
    from occreid.data.synthocc import generate

    root = workdir / "synthocc"
    if not root.is_dir():
        generate(root, preset="small", seed=0, protocol="occluded", progress=False)
    return root


def ddp_overrides(root: Path, out: Path, dry: bool, gpus: int) -> list[str]:
    """OGFR on SynthOcc, agent warm-up 1 epoch; 2 processes on NCCL with two GPUs, gloo sharing one GPU, or
    gloo on the CPU (--dry-run)."""
    o = [f"data.root={root}", f"train.output_dir={out}", "data.dataset=synthocc", "model.pretrained=false"]
    o += [
        "model.name=ogfr",
        "model.backbone=vit_small_patch16",
        "data.image_size=[128,64]",
        "data.p=4",
        "data.k=4",
    ]
    o += ["model.vit_depth=4", "ogfr.pattern_block=1", "ogfr.agent_block=2", "ogfr.shared_blocks=2"]
    o += ["ogfr.agent_warmup_epochs=1", "train.epochs=2", "train.steps_per_epoch=3", "train.warmup_epochs=0"]
    o += [
        "train.eval_period=0",
        "train.log_period=1",
        "data.num_workers=0" if dry else "data.num_workers=auto",
    ]
    if dry:
        return [*o, *TOY, "model.backbone=vit_tiny_patch16", "train.device=cpu"]
    if gpus < 2:
        return [*o, "train.device=cuda:0", "train.dist_backend=gloo", "train.amp=auto"]
    return [*o, "train.device=auto", "train.amp=auto"]


def check_ddp(dry: bool, workdir: Path) -> None:
    """2 processes with OGFR's agent (warm-up, then learning): one model on both ranks; then the run resumed
    on 1 process (another GPU count) for a third epoch."""
    gpus = 0 if dry else torch.cuda.device_count()
    device_for(dry)
    out = workdir / "ddp"
    overrides = ddp_overrides(synth_data(workdir), out, dry, gpus)
    _torchrun(2, overrides)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    (ddp,) = [r for r in records if r["kind"] == "ddp"]
    if ddp["fingerprints"][0] != ddp["fingerprints"][1]:
        raise SystemExit(f"error: the ranks ended with different weights {ddp['fingerprints']}")
    rl = [r["rl"] for r in records if r["kind"] == "train"]
    backend = "gloo (CPU)" if dry else ("nccl" if gpus >= 2 else "gloo on one GPU")
    rl_text = ", ".join(f"{v:.3g}" for v in rl)
    say("ddp 2 processes", f"ok on {backend}: identical weights; rl per logged step {rl_text}")
    _train([*overrides, "train.epochs=3"], resume=True)  # this process alone
    state = load_checkpoint(out / "last.pt")
    if state["epoch"] != 3:
        raise SystemExit(f"error: the resumed run stopped at epoch {state['epoch']}, not 3")
    say("resume 2 -> 1 process", f"ok: epochs 3, step {state['step']} (2 processes x 3 + 3 steps)")


def check_resume(dry: bool, workdir: Path) -> None:
    """A run interrupted after epoch 1 and resumed against one run straight through: same step count and
    (up to GPU non-determinism) the same weights."""
    device_for(dry)
    root = synth_data(workdir)
    base = [f"data.root={root}", "data.dataset=synthocc", "model.pretrained=false", "model.name=pgfl_kd"]
    base += [
        "data.image_size=[128,64]",
        "data.p=4",
        "data.k=4",
        "train.steps_per_epoch=4",
        "train.eval_period=0",
    ]
    base += ["train.warmup_epochs=0", "model.backbone=resnet18"]
    base += [*TOY, "train.steps_per_epoch=2", "train.device=cpu"] if dry else ["train.amp=auto"]
    whole = base + [f"train.output_dir={workdir / 'whole'}", "train.epochs=2"]
    part = base + [f"train.output_dir={workdir / 'part'}"]
    _train(whole)
    _train([*part, "train.epochs=1"])
    _train([*part, "train.epochs=2"], resume=True)
    a, b = (load_checkpoint(workdir / name / "last.pt") for name in ("whole", "part"))
    diff = max(float((a["model"][k].float() - b["model"][k].float()).abs().max()) for k in a["model"])
    if a["step"] != b["step"]:
        raise SystemExit(f"error: steps differ after resume: {a['step']} vs {b['step']}")
    say("resume", f"ok: step {b['step']} both; max |weight difference| {diff:.3g} (0 on the CPU)")


def check_eval(dry: bool) -> None:
    """Occluded-Duke's size (2,210 queries, 17,661 gallery images, 768-d features): metrics and time on the
    GPU against the CPU, without and with re-ranking."""
    from occreid.data.records import ImageRecord
    from occreid.evaluation.evaluate import evaluate_features

    device = device_for(dry)
    nq, ng, d, ids = (50, 300, 32, 40) if dry else (2210, 17661, 768, 1110)
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(ids, d)).astype(np.float32)
    q_pid, g_pid = rng.integers(0, ids, nq), rng.integers(0, ids, ng)
    qf = torch.from_numpy(centres[q_pid] + 1.5 * rng.normal(size=(nq, d)).astype(np.float32))
    gf = torch.from_numpy(centres[g_pid] + 1.5 * rng.normal(size=(ng, d)).astype(np.float32))
    query = [ImageRecord(f"q{i}.jpg", int(p), 0) for i, p in enumerate(q_pid)]
    gallery = [ImageRecord(f"g{i}.jpg", int(p), 1) for i, p in enumerate(g_pid)]
    for rerank in (False, True):
        cfg = load_config(None, [f"eval.rerank={'true' if rerank else 'false'}"])
        out, seconds = {}, {}
        for where in ("cpu", device.type):
            start = time.perf_counter()
            out[where] = evaluate_features(
                qf, gf, query, gallery, cfg, torch.device(where) if where == "cpu" else device
            ).result
            seconds[where] = time.perf_counter() - start
        gap = max(
            abs(out["cpu"].mAP - out[device.type].mAP),
            float(np.abs(out["cpu"].cmc - out[device.type].cmc).max()),
        )
        name = f"eval {'re-ranked' if rerank else 'plain'} {nq}x{ng}"
        say(
            name,
            f"mAP {out[device.type].mAP:.4f}, |GPU - CPU| {gap:.2g}; "
            f"{device.type} {seconds[device.type]:.2f} s, cpu {seconds['cpu']:.2f} s",
        )
        if gap > 1e-4:
            raise SystemExit(f"error: GPU and CPU metrics differ by {gap:.3g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("check", choices=["steps", "ogfr-fp16", "ddp", "resume", "eval"])
    parser.add_argument("workdir", nargs="?", default=".", type=Path)
    parser.add_argument("--dry-run", action="store_true", help="the CPU at toy sizes")
    args = parser.parse_args()
    checks = {
        "steps": lambda: check_steps(args.dry_run),
        "ogfr-fp16": lambda: check_ogfr_fp16(args.dry_run),
        "ddp": lambda: check_ddp(args.dry_run, args.workdir),
        "resume": lambda: check_resume(args.dry_run, args.workdir),
        "eval": lambda: check_eval(args.dry_run),
    }
    checks[args.check]()


if __name__ == "__main__":
    main()
