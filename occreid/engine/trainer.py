"""The training loop, for every method.

A method (occreid.modeling.base.ReidMethod) declares what it needs and supplies its loss terms; this loop owns
the data, optimisation, schedule, mixed precision, logging, checkpoints and evaluation, and never asks which
method it runs. It reads top to bottom like nanoGPT's train.py:

    model -> data (what `method.batch_needs()` asks for) -> optimisers (`method.parameter_groups`, plus
    `method.extra_optimizers()`, e.g. OGFR's agent) / schedule -> (resume) -> for each epoch:
    `method.set_epoch(e)`, for each batch: forward (`training_step` -> named terms), loss, backward, step every
    optimiser, log -> checkpoint -> evaluate

A method with several parts (OGFR's teacher, agent and student) returns each part's loss as one more named term
and detaches what a part must not learn from, so one backward gives every part only its own gradients.
"""

from __future__ import annotations

import json
import math
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from occreid.config import Config, save_config
from occreid.data.records import ImageRecord, ReidDataset
from occreid.engine.checkpoint import rng_state, set_rng_state
from occreid.engine.rundir import check_run_dir, clear_run_dir
from occreid.errors import OccreidError
from occreid.evaluation.evaluate import EvalOutput, evaluate_model
from occreid.modeling.checkpoint import load_checkpoint, load_weights, save_checkpoint
from occreid.utils.distributed import (
    DistInfo,
    all_gather_objects,
    all_ranks,
    barrier,
    broadcast_buffers,
    cleanup_distributed,
    parameter_fingerprint,
    setup_distributed,
)
from occreid.utils.files import check_writable_dir
from occreid.utils.progress import progress as progress_bar


class TrainingDiverged(OccreidError):
    """A loss became NaN or infinite."""


# ----------------------------------------------------------------------------------------------------------
# What the loop needs from the data and the method


def keypoints_for(
    dataset: ReidDataset, records: list[ImageRecord], store_path: str | None, allow_missing: bool = False
) -> list[np.ndarray]:
    """(17, 3) keypoints per record from the dataset's keypoint store (default `<root>/keypoints.npz`).
    Images the store lacks are an error, or with `allow_missing` "no pose" (all confidences 0)."""
    from occreid.pose.store import DEFAULT_STORE_NAME, KeypointStore

    path = Path(store_path) if store_path else dataset.root / DEFAULT_STORE_NAME
    store = KeypointStore.load(path)
    relpaths = [dataset.relpath(r) for r in records]
    missing = store.check_coverage(relpaths, allow_missing=allow_missing, source=str(path))
    if missing:
        print(
            f"warning: {path} lacks {missing} of {len(relpaths)} images; they train/test with no pose "
            "(data.allow_missing_keypoints=true)",
            flush=True,
        )
    return [store[p] for p in relpaths]


def load_test_split(cfg: Config, train_set: ReidDataset | None = None) -> ReidDataset:
    from occreid.data.datasets import load_dataset

    if cfg.data.test_dataset is None:
        return train_set if train_set is not None else load_dataset(cfg.data.dataset, cfg.data.root)
    return load_dataset(cfg.data.test_dataset, cfg.data.test_root or cfg.data.root)


def check_split_images(
    *datasets: ReidDataset, splits: tuple[str, ...] = ("train", "query", "gallery")
) -> None:
    """Every image training and evaluation will read can be decoded (occreid.data.images.check_images)."""
    from occreid.data.images import check_images

    seen: set[str] = set()
    for ds in datasets:
        for split in splits:
            records = [r for r in getattr(ds, split) if r.path not in seen]
            seen.update(r.path for r in records)
            if records:
                check_images([r.path for r in records], f"{ds.name} {split}")


def test_keypoints(
    cfg: Config, test_set: ReidDataset, needed: bool
) -> tuple[list[np.ndarray] | None, list[np.ndarray] | None]:
    """Query and gallery keypoints where the method's test feature needs them (`BatchNeeds.test_keypoints`)."""
    if not needed:
        return None, None
    store = cfg.data.keypoints if cfg.data.test_dataset is None else cfg.data.test_keypoints
    allow = cfg.data.allow_missing_keypoints
    return keypoints_for(test_set, test_set.query, store, allow), keypoints_for(
        test_set, test_set.gallery, store, allow
    )


# ----------------------------------------------------------------------------------------------------------
# Optimisation


def build_optimizer(cfg: Config, groups: list[dict]) -> torch.optim.Optimizer:
    """The main optimiser (train.optimizer, train.lr) over a method's parameter groups."""
    t = cfg.train
    if t.optimizer == "adam":
        return torch.optim.Adam(groups, lr=t.lr)
    return torch.optim.SGD(groups, lr=t.lr, momentum=t.momentum)


def lr_factor(cfg: Config, epoch: int) -> float:
    """The learning-rate factor of a 0-based epoch: linear warm-up from warmup_factor over warmup_epochs, then
    x gamma at each milestone ("step", the strong baseline's) or a half cosine from 1 down to
    cosine_min_factor at the last epoch ("cosine", TransReID's)."""
    t = cfg.train
    if epoch < t.warmup_epochs:
        alpha = epoch / t.warmup_epochs
        warm = t.warmup_factor * (1 - alpha) + alpha
    else:
        warm = 1.0
    if t.schedule == "step":
        return warm * t.gamma ** sum(epoch >= m for m in t.milestones)
    if epoch < t.warmup_epochs:
        return warm
    progress = (epoch - t.warmup_epochs) / max(1, t.epochs - 1 - t.warmup_epochs)
    return t.cosine_min_factor + (1 - t.cosine_min_factor) * 0.5 * (
        1 + math.cos(math.pi * min(progress, 1.0))
    )


def build_scheduler(cfg: Config, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-epoch schedule of the main optimiser (`lr_factor`)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: lr_factor(cfg, epoch))


class _TrainStep(nn.Module):
    """Calls the method's training_step through forward(), so DistributedDataParallel syncs its gradients."""

    def __init__(self, method: nn.Module):
        super().__init__()
        self.method = method

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return self.method.training_step(batch)


# ----------------------------------------------------------------------------------------------------------
# Run directory


def environment_info(info: DistInfo) -> dict[str, Any]:
    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                timeout=5,
                cwd=Path(__file__).resolve().parent,
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        commit = None
    import torchvision

    from occreid import __version__

    return {
        "occreid": __version__,
        "git_commit": commit,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "device": str(info.device),
        "cuda_device": torch.cuda.get_device_name(info.device) if info.device.type == "cuda" else None,
        "world_size": info.world_size,
        "platform": platform.platform(),
        "argv": sys.argv,
    }


def _step_of(line: str, path: Path) -> float:
    """The step of a metrics.jsonl line; a line cut short by a crash mid-write counts as after every step, so
    resuming drops it (with a warning) instead of failing."""
    try:
        return json.loads(line).get("step", 0)
    except (json.JSONDecodeError, AttributeError):
        print(
            f"warning: {path}: dropping an incomplete line (a crash while it was written): {line[:60]!r}",
            flush=True,
        )
        return float("inf")


class MetricsLog:
    """Metrics as JSON lines (`metrics.jsonl`), and TensorBoard scalars when tensorboard is installed.

    `resume_step`: the step of the checkpoint a run continues from; records written after it (by the part of an
    epoch that was interrupted and will run again) are dropped, so no step appears twice. None: a new run.
    """

    def __init__(self, run_dir: Path, enabled: bool, resume_step: int | None):
        self.enabled = enabled
        self.path = run_dir / "metrics.jsonl"
        self.tb = None
        if not enabled:
            return
        if resume_step is None:
            self.path.unlink(missing_ok=True)
        elif self.path.is_file():
            kept = [
                line
                for line in self.path.read_text().splitlines()
                if _step_of(line, self.path) <= resume_step
            ]
            self.path.write_text("".join(line + "\n" for line in kept))
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run_dir / "tb"))
        except ImportError:
            pass

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            kind = record.get("kind", "train")
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in ("step", "epoch"):
                    self.tb.add_scalar(f"{kind}/{key}", value, record.get("step", 0))

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


# ----------------------------------------------------------------------------------------------------------
# The loop


@dataclass
class TrainResult:
    run_dir: Path
    epochs: int
    steps: int
    best_map: float
    last_eval: dict[str, Any] | None


def _to_device(batch: dict[str, Any], device: torch.device, channels_last: bool) -> dict[str, Any]:
    out = {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    if channels_last:  # every image-shaped tensor: the images, and the occluded views of paired-view methods
        for key, value in out.items():
            if isinstance(value, torch.Tensor) and value.ndim == 4 and value.is_floating_point():
                out[key] = value.contiguous(memory_format=torch.channels_last)
    return out


def _autocast(cfg: Config, device: torch.device) -> torch.autocast:
    amp = cfg.train.amp
    if amp == "fp16" and device.type != "cuda":
        raise OccreidError("train.amp=fp16 needs a CUDA device; on the CPU use train.amp=bf16 (or none)")
    return torch.autocast(
        device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16, enabled=amp != "none"
    )


def _log_eval(cfg: Config, out: EvalOutput, epoch: int, step: int) -> dict[str, Any]:
    r = out.result
    return {
        "kind": "eval",
        "epoch": epoch,
        "step": step,
        "mAP": float(r.mAP),
        "mINP": float(r.mINP),
        **{f"rank{k}": float(r.cmc[k - 1]) for k in (1, 3, 5, 10) if k <= len(r.cmc)},
        # per occluder type of the queries (against the whole gallery), where the dataset knows the types
        **{
            f"{key}[{t}]": float(v)
            for t, pr in out.per_type.items()
            for key, v in (("rank1", pr.cmc[0]), ("mAP", pr.mAP), ("mINP", pr.mINP))
        },
    }


def train(
    cfg: Config, resume: str | Path | None = None, progress: bool = True, overwrite: bool = False
) -> TrainResult:
    """Train the method the config describes on `cfg.data`; write the run directory `cfg.train.output_dir`.

    `resume`: a checkpoint path, or "auto" for `<output_dir>/last.pt` when it exists. A run directory that
    already holds a run is refused unless the run is resumed or `overwrite` replaces it (occreid.engine.rundir).
    """
    from occreid.data.datasets import load_dataset
    from occreid.data.loaders import build_train_loader
    from occreid.methods import build_model

    t = cfg.train
    info = setup_distributed(t.device)
    device = info.device
    run_dir = Path(t.output_dir)
    check_run_dir(run_dir, resume, overwrite)
    check_writable_dir(run_dir, "train.output_dir")
    torch.manual_seed(t.seed)
    np.random.seed(t.seed)

    # ---- the method, then the data it asks for
    dataset = load_dataset(cfg.data.dataset, cfg.data.root)
    if not dataset.train:
        raise OccreidError(
            f"dataset {cfg.data.dataset} at {cfg.data.root} has no training split (test-only set)"
        )
    method = build_model(cfg, num_classes=dataset.num_train_pids).to(device)
    needs = method.batch_needs()
    train_kpts = (
        keypoints_for(dataset, dataset.train, cfg.data.keypoints, cfg.data.allow_missing_keypoints)
        if needs.keypoints
        else None
    )
    loader = build_train_loader(
        cfg,
        dataset.train,
        train_kpts,
        paired_views=needs.paired_views,
        rank=info.rank,
        world_size=info.world_size,
        seed=t.seed,
    )
    sampler = loader.batch_sampler
    test_set = load_test_split(cfg, dataset)
    q_kpts, g_kpts = test_keypoints(cfg, test_set, needs.test_keypoints)
    check_split_images(dataset, test_set)

    # ---- optimisation
    if t.channels_last:
        method = method.to(memory_format=torch.channels_last)
    if t.sync_bn and info.enabled:
        if device.type != "cuda":
            raise OccreidError(
                "train.sync_bn=true needs CUDA devices (PyTorch's SyncBatchNorm is GPU-only); "
                "set train.sync_bn=false for CPU runs"
            )
        method = nn.SyncBatchNorm.convert_sync_batchnorm(method)
    extra_optimizers = (
        method.extra_optimizers()
    )  # e.g. OGFR's agent: its own optimiser, left out of the main one
    owned = {
        id(p) for opt in extra_optimizers.values() for group in opt.param_groups for p in group["params"]
    }
    optimizer = build_optimizer(cfg, method.parameter_groups(t.weight_decay, exclude=owned))
    optimizers = [optimizer, *extra_optimizers.values()]
    scheduler = build_scheduler(cfg, optimizer)
    scaler = torch.amp.GradScaler(device.type, enabled=t.amp == "fp16")
    step_module: nn.Module = _TrainStep(method)
    if info.enabled:
        step_module = nn.parallel.DistributedDataParallel(
            step_module,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=True,
        )

    # ---- resume
    start_epoch, step, best_map = 0, 0, -1.0
    resume_path = run_dir / "last.pt" if resume == "auto" else (Path(resume) if resume else None)
    if resume_path is not None and (resume != "auto" or resume_path.is_file()):
        state = load_checkpoint(resume_path, map_location=device)
        load_weights(method, state, resume_path, cfg, num_classes=dataset.num_train_pids)
        optimizer.load_state_dict(state["optimizer"])
        for name, opt in extra_optimizers.items():
            opt.load_state_dict(state["extra_optimizers"][name])
        scheduler.load_state_dict(state["scheduler"])
        if "scaler" in state:  # fp16 loss scale; absent from checkpoints of older versions
            scaler.load_state_dict(state["scaler"])
        start_epoch, step, best_map = state["epoch"], state["step"], state["best_map"]
        set_rng_state(state["rng"])

    if overwrite and info.is_main:
        clear_run_dir(run_dir)
    log = MetricsLog(run_dir, info.is_main, resume_step=step if start_epoch > 0 else None)
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
        (run_dir / "environment.json").write_text(json.dumps(environment_info(info), indent=2))
        print(dataset.summary())
        print(
            f"training {type(method).__name__} on {device}, {len(sampler)} steps/epoch, "
            f"epochs {start_epoch}->{t.epochs}, run dir {run_dir}"
        )

    def save(names: list[str], epochs_done: int, best: float) -> None:
        """The training state after `epochs_done` epochs, to each of `names` in the run directory (rank 0)."""
        if info.is_main:
            state = {
                "model": method.state_dict(),
                "optimizer": optimizer.state_dict(),
                "extra_optimizers": {name: opt.state_dict() for name, opt in extra_optimizers.items()},
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "epoch": epochs_done,
                "step": step,
                "rng": rng_state(),
                "config": cfg.model_dump(mode="json"),
                "num_classes": dataset.num_train_pids,
                "best_map": best,
            }
            for name in names:
                save_checkpoint(run_dir / name, state)

    last_eval: dict[str, Any] | None = None
    for epoch in range(start_epoch, t.epochs):
        # A per-epoch seed makes an epoch's sampling and augmentation independent of what ran before it, so a
        # resumed run repeats an uninterrupted one exactly (on the CPU).
        torch.manual_seed(t.seed * 100_003 + epoch)
        loader.generator.manual_seed(
            t.seed * 100_003 + epoch * 1_009 + info.rank
        )  # worker augmentation seeds
        sampler.set_epoch(epoch)
        method.set_epoch(epoch)
        method.train()
        t_data, t_end = 0.0, time.perf_counter()
        bar = progress_bar(
            loader, desc=f"epoch {epoch + 1}/{t.epochs}", unit="steps", enabled=info.is_main and progress
        )
        for batch in bar:
            t_data += time.perf_counter() - t_end
            batch = _to_device(batch, device, t.channels_last)
            with _autocast(cfg, device):
                terms = step_module(batch)
            metric_names = getattr(method, "metric_names", ())
            loss = sum(v.float() for k, v in terms.items() if k not in metric_names)
            # Steps are numbered from 1, as in metrics.jsonl. Every rank takes part in the check, so all stop.
            if not all_ranks(bool(torch.isfinite(loss)), info):
                values = ", ".join(f"{k}={v.item():.4g}" for k, v in terms.items())
                raise TrainingDiverged(
                    f"loss became {loss.item()} at step {step + 1} (epoch {epoch + 1}) on rank {info.rank} or "
                    f"another rank: {values}; lower train.lr, enable train.grad_clip, or check the data"
                )
            for opt in optimizers:
                opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            for opt in optimizers:
                scaler.unscale_(opt)
            grad_norm = nn.utils.clip_grad_norm_(method.parameters(), t.grad_clip or float("inf"))
            # fp16's GradScaler skips steps with inf gradients by design; otherwise they would poison the weights.
            # DDP has averaged the gradients, so every rank sees the same norm and stops together.
            if t.amp != "fp16" and not torch.isfinite(grad_norm):
                raise TrainingDiverged(
                    f"gradient norm became {float(grad_norm)} at step {step + 1} (epoch {epoch + 1}) with a finite "
                    f"loss {loss.item():.4g}; lower train.lr or enable train.grad_clip"
                )
            for opt in optimizers:
                scaler.step(opt)
            scaler.update()
            step += 1
            if step % t.log_period == 0 or step == 1:
                record = {
                    "kind": "train",
                    "epoch": epoch + 1,
                    "step": step,
                    "lr": optimizer.param_groups[0]["lr"],
                    "loss": loss.item(),
                    "grad_norm": float(grad_norm),
                    "data_time": t_data,
                    **{k: v.item() for k, v in terms.items()},
                }
                log.write(record)
                if info.is_main and progress:
                    terms_txt = " ".join(f"{k}={v.item():.3f}" for k, v in terms.items())
                    bar.set_postfix_str(f"loss {loss.item():.4f}")
                    bar.write(
                        f"epoch {epoch + 1} step {step} loss {loss.item():.4f} ({terms_txt}) "
                        f"|g| {float(grad_norm):.2f} lr {optimizer.param_groups[0]['lr']:.2e}"
                    )
                t_data = 0.0
            t_end = time.perf_counter()
        scheduler.step()

        # ---- evaluate and checkpoint (one model on every rank: rank 0's BatchNorm statistics)
        broadcast_buffers(method, info)
        done = epoch + 1

        save(
            ["last.pt"], done, best_map
        )  # first: an evaluation that fails (a bad gallery image, Ctrl-C) keeps the epoch
        evaluate_now = done == t.epochs or (t.eval_period > 0 and done % t.eval_period == 0)
        improved = False
        if evaluate_now:
            out = evaluate_model(method, cfg, test_set.query, test_set.gallery, device, q_kpts, g_kpts, info)
            if out is not None:
                last_eval = _log_eval(cfg, out, done, step)
                log.write(last_eval)
                improved = out.result.mAP > best_map
                best_map = max(best_map, float(out.result.mAP))
                print(
                    f"epoch {done}: mAP {out.result.mAP:.1%} rank-1 {out.result.cmc[0]:.1%} "
                    f"mINP {out.result.mINP:.1%}",
                    flush=True,
                )
                (run_dir / "eval.json").write_text(
                    json.dumps({**last_eval, "settings": out.settings}, indent=2)
                )
            save(
                ["last.pt", *(["best.pt"] if improved else [])], done, best_map
            )  # again, with the new best_map
        barrier(info)

    if info.enabled:  # every rank must end with the same weights
        prints = all_gather_objects(parameter_fingerprint(method), info)
        log.write({"kind": "ddp", "world_size": info.world_size, "fingerprints": prints})
        if len(set(prints)) > 1 and info.is_main:
            print(f"warning: ranks ended with different weights (fingerprints {prints})", flush=True)
    log.close()
    cleanup_distributed(info)
    return TrainResult(run_dir, t.epochs, step, best_map, last_eval)
