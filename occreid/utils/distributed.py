"""Multi-process training through PyTorch's own engine: `torchrun --nproc_per_node N -m occreid train ...`.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; we join the process group (NCCL on CUDA, gloo on the CPU) and
pin each process to its GPU. A plain `occreid train` is a world of one and never touches torch.distributed.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NoReturn

import torch
import torch.distributed as dist

from occreid.errors import OccreidError
from occreid.utils.device import resolve_device


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup_distributed(device_name: str = "auto", timeout_min: int = 60, backend: str = "auto") -> DistInfo:
    """This process's rank and device; under torchrun, joins the process group (`backend` "auto": NCCL on
    GPUs, gloo on CPUs). `timeout_min`: how long a collective waits for the other ranks (NCCL's own default,
    10 minutes, is shorter than rank 0's saving and evaluation of a large test set)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo(device=resolve_device(device_name))
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if device.type == "cuda":
        _check_gpu_count(device)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        if backend == "auto":
            backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=timedelta(minutes=timeout_min))
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def _check_gpu_count(device: torch.device) -> None:
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        procs = os.environ.get("LOCAL_WORLD_SIZE", "more")
        raise OccreidError(
            f"torchrun started {procs} processes on this machine but it has {count} GPU(s) "
            f"(this process would use cuda:{device.index}); use torchrun --nproc_per_node {count} "
            "(at most one process per GPU)"
        )


def cleanup_distributed(info: DistInfo) -> None:
    """Leave the process group together: a rank that tore its connections down while another still sent on
    them could abort in gloo's transport thread ("terminate called without an active exception")."""
    if info.enabled and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def exit_after_distributed_run() -> NoReturn:
    """End a torchrun worker that has finished its work (every file written, the process group left) with
    status 0, skipping the interpreter's teardown. DistributedDataParallel keeps torch's gloo process group
    alive past destroy_process_group (torch 2.14), and tearing it down at interpreter exit aborted about one
    two-process run in 20 ("terminate called without an active exception"): torchrun then reports a crash
    and stops the other rank."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def all_gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """Every rank's `obj`, in rank order (a list of one outside distributed runs)."""
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def all_ranks(flag: bool | torch.Tensor, info: DistInfo) -> bool:
    """True when `flag` (a bool, or a bool tensor on this rank's device) is true on every rank: one host sync.
    Every rank must call it: a rank that stops alone would leave the others waiting in the next collective
    until the process-group timeout."""
    if not info.enabled:
        return bool(flag)
    tensor = torch.as_tensor(flag, device=info.device).to(torch.float32).reshape(1)
    dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
    return bool(tensor.item() > 0)


def broadcast_buffers(module: torch.nn.Module, info: DistInfo) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics). Without SyncBN each rank updates its
    own statistics from its own batches; evaluation and checkpoints must use one model, rank 0's."""
    if info.enabled:
        for buffer in module.buffers():
            dist.broadcast(buffer.data, src=0)


def parameter_fingerprint(module: torch.nn.Module) -> float:
    """A number that differs between two modules whose parameters differ (almost surely); equal parameters
    give equal numbers. Used to check that every DDP rank ends with the same model, parameters and buffers
    (the trainer gives every rank rank 0's BatchNorm statistics before it evaluates or checkpoints).

    sum_i x_i cos(i) over the concatenated float64 values, one tensor at a time on the CPU: the host memory
    it needs is that of the largest tensor, not of the whole model (OGFR's teacher and student: 4 GB)."""
    tensors = [*module.parameters(), *(b for b in module.buffers() if b.is_floating_point())]
    total, offset = 0.0, 0
    for t in tensors:
        flat = t.detach().flatten().cpu().double()
        phase = torch.arange(offset, offset + flat.numel(), dtype=torch.float64)
        total += float((flat * torch.cos(phase)).sum())
        offset += flat.numel()
    return total
