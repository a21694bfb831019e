"""The training loop, for every method.

A method (occreid.modeling.base.ReidMethod) declares what it needs and supplies its loss terms; this loop owns
the data, optimisation, schedule, mixed precision, logging, checkpoints and evaluation, and never asks which
method it runs. `train` reads top to bottom like nanoGPT's train.py, one named step a line:

    set up (the method, then the data it asks for: `method.batch_needs()`; the optimisers:
    `method.parameter_groups` plus `method.extra_optimizers()`, e.g. OGFR's agent) -> resume -> for each
    epoch: `method.set_epoch(e)`, for each batch one step (forward: `training_step` -> named terms; loss,
    backward, step every optimiser; log) -> checkpoint -> evaluate

A method with several parts (OGFR's teacher, agent and student) returns each part's loss as one more named
term and detaches what a part must not learn from, so one backward gives every part only its own gradients.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from occreid.config import Config, apply_overrides
from occreid.data.loaders import build_train_loader
from occreid.data.records import ReidDataset
from occreid.data.splits import (
    check_split_images,
    keypoints_for,
    load_test_split,
    load_train_set,
    test_keypoints,
)
from occreid.engine.checkpoint import rng_state, set_rng_state
from occreid.engine.metrics_log import MetricsLog, environment_info
from occreid.engine.optim import build_optimizers, build_scheduler
from occreid.engine.resume import check_resume_settings
from occreid.engine.rundir import check_run_dir, claim_run_dir, clear_run_dir, expand_run_dir
from occreid.errors import OccreidError
from occreid.evaluation.evaluate import EvalOutput, evaluate_model
from occreid.methods import build_model
from occreid.modeling.base import ReidMethod
from occreid.modeling.checkpoint import checkpoint_config, load_checkpoint, load_weights, save_checkpoint
from occreid.utils.device import resolve_amp, set_tf32
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
from occreid.utils.files import atomic_write_text, check_writable_dir
from occreid.utils.progress import progress as progress_bar


class TrainingDiverged(OccreidError):
    """A loss became NaN or infinite."""


@dataclass
class TrainResult:
    run_dir: Path
    epochs: int
    steps: int
    best_map: float
    last_eval: dict[str, Any] | None


@dataclass
class TrainingRun:
    """What one run trains with (built by `_set_up`) and where it stands (step, best mAP, last evaluation)."""

    cfg: Config
    info: DistInfo
    run_dir: Path
    dataset: ReidDataset
    test_set: ReidDataset
    test_keypoints: tuple[list[np.ndarray] | None, list[np.ndarray] | None]
    method: ReidMethod
    loader: torch.utils.data.DataLoader
    optimizer: torch.optim.Optimizer
    extra_optimizers: dict[str, torch.optim.Optimizer]
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    step_module: nn.Module | None
    no_eval_reason: str | None = None  # why this run does not evaluate (then best.pt is the last epoch)
    log: MetricsLog | None = None
    start_epoch: int = 0
    step: int = 0
    best_map: float = -1.0
    last_eval: dict[str, Any] | None = None

    @property
    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [self.optimizer, *self.extra_optimizers.values()]


def train(
    cfg: Config, resume: str | Path | None = None, progress: bool = True, overwrite: bool = False
) -> TrainResult:
    """Train the method the config describes on `cfg.data`; write the run directory `cfg.train.output_dir`.

    `resume`: a checkpoint path, or "auto" for `<output_dir>/last.pt` when it exists. A run directory that
    already holds a run is refused unless the run is resumed or `overwrite` replaces it
    (occreid.engine.rundir).
    """
    cfg.train.output_dir = str(expand_run_dir(cfg.train.output_dir, cfg.data.root))  # "{data}" -> its name
    with claim_run_dir(Path(cfg.train.output_dir)):  # one run per folder (a lock; rank 0 under DDP)
        check_run_dir(Path(cfg.train.output_dir), resume, overwrite)
        state, resume_path = _resume_state(cfg, resume)
        run = _set_up(cfg, resuming=state is not None)
        _resume(run, state, resume_path)
        _open_run_dir(run, overwrite)
        for epoch in range(run.start_epoch, cfg.train.epochs):
            _train_epoch(run, epoch, progress)
            _evaluate_and_checkpoint(run, epochs_done=epoch + 1)
        _finish(run)
    return TrainResult(run.run_dir, cfg.train.epochs, run.step, run.best_map, run.last_eval)


# ----------------------------------------------------------------------------------------------------------
# Set-up and resume


def _set_up(cfg: Config, resuming: bool) -> TrainingRun:
    """The method (without its pretrained file when `resuming`: the checkpoint holds every weight), the data
    it asks for, and the optimisers."""
    t = cfg.train
    info = setup_distributed(t.device, t.dist_timeout_min, t.dist_backend)
    _configure_backends(cfg, info)
    run_dir = Path(t.output_dir)
    check_writable_dir(run_dir, "train.output_dir")
    torch.manual_seed(t.seed)
    np.random.seed(t.seed)

    dataset = load_train_set(cfg)
    if not dataset.train:
        raise OccreidError(
            f"dataset {cfg.data.dataset} at {cfg.data.root} has no training split (test-only set)"
        )
    no_eval_reason = _no_eval_reason(cfg, dataset)
    build_cfg = apply_overrides(cfg, ["model.pretrained=false"]) if resuming else cfg
    method = build_model(build_cfg, num_classes=dataset.num_train_pids).to(info.device)
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
    test_set = load_test_split(cfg, dataset)
    q_kpts, g_kpts = test_keypoints(cfg, test_set, needs.test_keypoints and no_eval_reason is None)
    check_split_images(dataset, test_set, info=info)  # each rank decodes its share

    method = _for_device(cfg, method, info)
    optimizer, extra_optimizers = build_optimizers(cfg, method)  # e.g. OGFR's agent has its own
    return TrainingRun(
        cfg=cfg,
        info=info,
        run_dir=run_dir,
        dataset=dataset,
        test_set=test_set,
        test_keypoints=(q_kpts, g_kpts),
        method=method,
        loader=loader,
        optimizer=optimizer,
        extra_optimizers=extra_optimizers,
        scheduler=build_scheduler(cfg, optimizer),
        scaler=torch.amp.GradScaler(info.device.type, enabled=resolve_amp(t.amp, info.device) == "fp16"),
        step_module=_step_module(method, info),
        no_eval_reason=no_eval_reason,
    )


def _configure_backends(cfg: Config, info: DistInfo) -> None:
    """On CUDA: TF32 in training where train.tf32 says so (evaluation switches it off, see
    occreid.evaluation.evaluate), and cuDNN's autotuner (the input size is fixed, so its search pays once)."""
    if info.device.type == "cuda":
        set_tf32(cfg.train.tf32)
        torch.backends.cudnn.benchmark = True


def _sync_bn(cfg: Config, info: DistInfo) -> bool:
    """train.sync_bn, "auto": on for several CUDA processes whose batch (p x k each) is below 32 images, where
    each GPU's BatchNorm statistics would be noisy."""
    if cfg.train.sync_bn != "auto":
        return cfg.train.sync_bn and info.enabled
    return info.enabled and info.device.type == "cuda" and cfg.data.p * cfg.data.k < 32


def _no_eval_reason(cfg: Config, dataset: ReidDataset) -> str | None:
    """Why the run will not evaluate (train.eval_period=-1, or train-only data), None if it will; half a test
    split is an OccreidError. Checked before any work."""
    if cfg.train.eval_period == -1:
        return "train.eval_period=-1"
    if cfg.data.test_dataset is not None:
        return None
    query, gallery = len(dataset.query), len(dataset.gallery)
    if query and gallery:
        return None
    if query or gallery:
        raise OccreidError(
            f"dataset {cfg.data.dataset} at {cfg.data.root} has {query} query and {gallery} gallery images; "
            "evaluation needs both: add the missing split, or set train.eval_period=-1 to train without it"
        )
    return "the data has no query/gallery images (train-only; data.split=auto:0.2 holds some out)"


def _for_device(cfg: Config, method: ReidMethod, info: DistInfo) -> ReidMethod:
    """NHWC weights (train.channels_last) and synchronised BatchNorm across GPUs (train.sync_bn)."""
    if cfg.train.channels_last:
        method = method.to(memory_format=torch.channels_last)
    if _sync_bn(cfg, info):
        if info.device.type != "cuda":
            raise OccreidError(
                "train.sync_bn=true needs CUDA devices (PyTorch's SyncBatchNorm is GPU-only); "
                "set train.sync_bn=false for CPU runs"
            )
        method = nn.SyncBatchNorm.convert_sync_batchnorm(method)
    return method


class _TrainStep(nn.Module):
    """Calls the method's training_step through forward(), so DistributedDataParallel syncs its gradients."""

    def __init__(self, method: nn.Module):
        super().__init__()
        self.method = method

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return self.method.training_step(batch)


def _step_module(method: ReidMethod, info: DistInfo) -> nn.Module:
    step_module: nn.Module = _TrainStep(method)
    if info.enabled:
        device_ids = [info.device.index] if info.device.type == "cuda" else None
        # Only a method that leaves parameters without gradients in some steps asks DDP to look for them
        # (OGFR's agent in its warm-up): the search walks the autograd graph every step.
        step_module = nn.parallel.DistributedDataParallel(
            step_module, device_ids=device_ids, find_unused_parameters=method.find_unused_parameters
        )
    return step_module


def _resume_state(cfg: Config, resume: str | Path | None) -> tuple[dict[str, Any] | None, Path | None]:
    """The checkpoint to continue from (`resume`, or "auto": the run folder's last.pt where there is one) and
    its path, after checking that `cfg` keeps the run's settings (occreid.engine.resume); (None, None) for a
    new run."""
    path = Path(cfg.train.output_dir) / "last.pt" if resume == "auto" else (Path(resume) if resume else None)
    if path is None or (resume == "auto" and not path.is_file()):
        return None, None
    # On the CPU: the RNG states are read there, and optimiser states move to their parameters' devices
    # (Adam's step counters stay on the CPU, as in a fresh run).
    state = load_checkpoint(path, map_location="cpu")
    check_resume_settings(cfg, checkpoint_config(state, path), path)
    return state, path


def _resume(run: TrainingRun, state: dict[str, Any] | None, path: Path | None) -> None:
    """The weights, optimisers, schedule, step and RNG states of the checkpoint `state` (read from `path`)."""
    if state is None:
        return
    load_weights(run.method, state, path, run.cfg, num_classes=run.dataset.num_train_pids)
    run.optimizer.load_state_dict(state["optimizer"])
    for name, opt in run.extra_optimizers.items():
        opt.load_state_dict(state["extra_optimizers"][name])
    run.scheduler.load_state_dict(state["scheduler"])
    if "scaler" in state:  # fp16 loss scale; absent from checkpoints of older versions
        run.scaler.load_state_dict(state["scaler"])
    run.start_epoch, run.step, run.best_map = state["epoch"], state["step"], state["best_map"]
    set_rng_state(state["rng"], run.info.device)


def _open_run_dir(run: TrainingRun, overwrite: bool) -> None:
    """The run folder's config, environment and metrics log (rank 0 writes; a resumed log drops the steps
    that will run again)."""
    info, cfg = run.info, run.cfg
    if overwrite and info.is_main:
        clear_run_dir(run.run_dir)
    run.log = MetricsLog(run.run_dir, info.is_main, resume_step=run.step if run.start_epoch > 0 else None)
    if info.is_main:
        run.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run.run_dir / "config.yaml", cfg.to_yaml())
        atomic_write_text(run.run_dir / "environment.json", json.dumps(environment_info(info), indent=2))
        if run.dataset.notes:  # how the data was read: identity names, an automatic split
            notes = {"dataset": run.dataset.name, "root": str(run.dataset.root), **run.dataset.notes}
            atomic_write_text(run.run_dir / "dataset.json", json.dumps(notes, indent=2))
        print(run.dataset.summary())
        if run.no_eval_reason:
            print(f"no evaluation: {run.no_eval_reason}; best.pt will be the last epoch", flush=True)
        print(
            f"training {type(run.method).__name__} on {info.device}, {len(run.loader.batch_sampler)} "
            f"steps/epoch, epochs {run.start_epoch}->{cfg.train.epochs}, run dir {run.run_dir}"
        )


# ----------------------------------------------------------------------------------------------------------
# One epoch, one step


def _train_epoch(run: TrainingRun, epoch: int, progress: bool) -> None:
    t, info = run.cfg.train, run.info
    # A per-epoch seed makes an epoch's sampling and augmentation independent of what ran before it, so a
    # resumed run repeats an uninterrupted one exactly (on the CPU). Each rank its own: drop path, random
    # erasing and the OGFR agent's sampling differ between GPUs.
    torch.manual_seed(t.seed * 100_003 + epoch + 1_000_003 * info.rank)
    run.loader.generator.manual_seed(
        t.seed * 100_003 + epoch * 1_009 + info.rank
    )  # worker augmentation seeds
    run.loader.batch_sampler.set_epoch(epoch)
    run.method.set_epoch(epoch)
    run.method.train()
    t_data, t_end = 0.0, time.perf_counter()
    show = info.is_main and progress
    bar = progress_bar(run.loader, desc=f"epoch {epoch + 1}/{t.epochs}", unit="steps", enabled=show)
    last = len(run.loader.batch_sampler) - 1
    for i, batch in enumerate(bar):
        t_data += time.perf_counter() - t_end
        loss, terms, grad_norm = _train_step(run, batch, epoch)
        if run.step % t.log_period == 0 or run.step == 1 or i == last:  # and every epoch's last step
            record = {
                "kind": "train",
                "epoch": epoch + 1,
                "step": run.step,
                "lr": run.optimizer.param_groups[0]["lr"],
                "loss": loss.item(),
                "grad_norm": float(grad_norm),
                "data_time": t_data,
                **{k: v.item() for k, v in terms.items()},
            }
            run.log.write(record)
            if show:
                _print_step(bar, record, terms)
            t_data = 0.0
        t_end = time.perf_counter()
    run.scheduler.step()


def _train_step(
    run: TrainingRun, batch: dict[str, Any], epoch: int
) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
    """Forward, loss, backward and a step of every optimiser: (loss, the method's terms, gradient norm)."""
    t, method, scaler = run.cfg.train, run.method, run.scaler
    batch = _to_device(batch, run.info.device, t.channels_last)
    with _autocast(run.cfg, run.info.device):
        terms = run.step_module(batch)
    metric_names = getattr(method, "metric_names", ())
    loss = sum(v.float() for k, v in terms.items() if k not in metric_names)
    for opt in run.optimizers:
        opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    # A GradScaler cannot step an optimiser without gradients (OGFR's agent in its warm-up).
    stepping = [opt for opt in run.optimizers if _has_gradients(opt)]
    for opt in stepping:
        scaler.unscale_(opt)
    grad_norm = nn.utils.clip_grad_norm_(method.parameters(), t.grad_clip or float("inf"))
    _check_finite(run, loss, grad_norm, terms, epoch)
    for opt in stepping:
        scaler.step(opt)
    scaler.update()
    run.step += 1
    return loss, terms, grad_norm


def _has_gradients(optimizer: torch.optim.Optimizer) -> bool:
    return any(p.grad is not None for group in optimizer.param_groups for p in group["params"])


def _check_finite(
    run: TrainingRun, loss: torch.Tensor, grad_norm: torch.Tensor, terms: dict[str, torch.Tensor], epoch: int
) -> None:
    """Stop on a NaN or infinite loss, or gradient norm: the step's one host sync (all ranks take part, so
    all stop). fp16's GradScaler skips steps with inf gradients by design; otherwise they would poison the
    weights. DDP has averaged the gradients, so every rank sees the same norm. Steps are numbered from 1, as
    in metrics.jsonl."""
    t, info = run.cfg.train, run.info
    finite = torch.isfinite(loss)
    if resolve_amp(t.amp, info.device) != "fp16":
        finite = finite & torch.isfinite(grad_norm)
    if all_ranks(finite, info):
        return
    if not all_ranks(torch.isfinite(loss), info):
        values = ", ".join(f"{k}={v.item():.4g}" for k, v in terms.items())
        raise TrainingDiverged(
            f"loss became {loss.item()} at step {run.step + 1} (epoch {epoch + 1}) on rank {info.rank} "
            f"or another rank: {values}; lower train.lr, enable train.grad_clip, or check the data"
        )
    raise TrainingDiverged(
        f"gradient norm became {float(grad_norm)} at step {run.step + 1} (epoch {epoch + 1}) with a "
        f"finite loss {loss.item():.4g}; lower train.lr or enable train.grad_clip"
    )


def _to_device(batch: dict[str, Any], device: torch.device, channels_last: bool) -> dict[str, Any]:
    out = {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    if channels_last:  # every image-shaped tensor: the images, and the occluded views of paired-view methods
        for key, value in out.items():
            if isinstance(value, torch.Tensor) and value.ndim == 4 and value.is_floating_point():
                out[key] = value.contiguous(memory_format=torch.channels_last)
    return out


def _autocast(cfg: Config, device: torch.device) -> torch.autocast:
    amp = resolve_amp(cfg.train.amp, device)
    if amp == "fp16" and device.type != "cuda":
        raise OccreidError("train.amp=fp16 needs a CUDA device; on the CPU use train.amp=bf16 (or none)")
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype, enabled=amp != "none")


def _print_step(bar: Any, record: dict[str, Any], terms: dict[str, torch.Tensor]) -> None:
    terms_txt = " ".join(f"{k}={v.item():.3f}" for k, v in terms.items())
    bar.set_postfix_str(f"loss {record['loss']:.4f}")
    bar.write(
        f"epoch {record['epoch']} step {record['step']} loss {record['loss']:.4f} ({terms_txt}) "
        f"|g| {record['grad_norm']:.2f} lr {record['lr']:.2e}"
    )


# ----------------------------------------------------------------------------------------------------------
# Evaluate and checkpoint


def _evaluate_and_checkpoint(run: TrainingRun, epochs_done: int) -> None:
    """last.pt, then (at eval_period and at the end) an evaluation, and last.pt / best.pt again with its mAP.
    One model on every rank first: rank 0's BatchNorm statistics."""
    t = run.cfg.train
    broadcast_buffers(run.method, run.info)
    _save(
        run, ["last.pt"], epochs_done
    )  # first: an evaluation that fails (a bad image, Ctrl-C) keeps the epoch
    if run.no_eval_reason is not None:
        if epochs_done == t.epochs:
            _save(run, ["best.pt"], epochs_done)  # no evaluation to choose by: the last epoch
    elif epochs_done == t.epochs or (t.eval_period > 0 and epochs_done % t.eval_period == 0):
        improved = _evaluate(run, epochs_done)
        _save(run, ["last.pt", *(["best.pt"] if improved else [])], epochs_done)
    barrier(run.info)


def _evaluate(run: TrainingRun, epochs_done: int) -> bool:
    """Evaluate on the test split, log it and write eval.json (rank 0); whether the mAP is a new best."""
    q_kpts, g_kpts = run.test_keypoints
    test = run.test_set
    out = evaluate_model(
        run.method, run.cfg, test.query, test.gallery, run.info.device, q_kpts, g_kpts, run.info
    )
    if out is None:  # not the main rank
        return False
    run.last_eval = _log_eval(out, epochs_done, run.step)
    run.log.write(run.last_eval)
    improved = out.result.mAP > run.best_map
    run.best_map = max(run.best_map, float(out.result.mAP))
    r = out.result
    print(f"epoch {epochs_done}: mAP {r.mAP:.1%} rank-1 {r.cmc[0]:.1%} mINP {r.mINP:.1%}", flush=True)
    eval_json = {**run.last_eval, "settings": out.settings, "per_query": r.per_query()}
    atomic_write_text(run.run_dir / "eval.json", json.dumps(eval_json, indent=2))
    return improved


def _log_eval(out: EvalOutput, epoch: int, step: int) -> dict[str, Any]:
    r = out.result
    per_type = {
        f"{key}[{t}]": float(v)
        for t, pr in out.per_type.items()
        for key, v in (("rank1", pr.cmc[0]), ("mAP", pr.mAP), ("mINP", pr.mINP))
    }  # per occluder type of the queries (against the whole gallery), where the dataset knows the types
    ranks = {f"rank{k}": float(r.cmc[k - 1]) for k in (1, 3, 5, 10) if k <= len(r.cmc)}
    return {
        "kind": "eval",
        "epoch": epoch,
        "step": step,
        "mAP": float(r.mAP),
        "mINP": float(r.mINP),
        **ranks,
        **per_type,
    }


def _save(run: TrainingRun, names: list[str], epochs_done: int) -> None:
    """The training state after `epochs_done` epochs, to each of `names` in the run folder (rank 0)."""
    if not run.info.is_main:
        return
    state = {
        "model": run.method.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "extra_optimizers": {name: opt.state_dict() for name, opt in run.extra_optimizers.items()},
        "scheduler": run.scheduler.state_dict(),
        "scaler": run.scaler.state_dict(),
        "epoch": epochs_done,
        "step": run.step,
        "rng": rng_state(run.info.device),
        "config": run.cfg.model_dump(mode="json"),
        "num_classes": run.dataset.num_train_pids,
        "best_map": run.best_map,
    }
    for name in names:
        save_checkpoint(run.run_dir / name, state)


def _finish(run: TrainingRun) -> None:
    """Every rank must end with the same weights: their fingerprints are logged, a difference warned of."""
    if run.info.enabled:
        prints = all_gather_objects(parameter_fingerprint(run.method), run.info)
        run.log.write({"kind": "ddp", "world_size": run.info.world_size, "fingerprints": prints})
        if len(set(prints)) > 1 and run.info.is_main:
            print(f"warning: ranks ended with different weights (fingerprints {prints})", flush=True)
    run.log.close()
    run.step_module = None  # DDP's reducer goes before its process group does
    cleanup_distributed(run.info)
