"""Devices: a device name from a config key or a command-line option as a torch device, and the settings
that depend on it (mixed precision, TF32, CPU cores per process)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from occreid.errors import OccreidError


def check_device(name: str, option: str = "train.device") -> torch.device:
    """`name` as a torch device; an unknown name, or CUDA on a machine without a usable GPU, is an
    OccreidError naming `option` (the config key or command-line option it came from)."""
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise OccreidError(f"{option}={name}: not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise OccreidError(
                f"{option}={name}: this machine has no CUDA GPU that torch can use; "
                "use cpu (or auto, which picks the GPU when there is one)"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise OccreidError(f"{option}={name}: there are only {torch.cuda.device_count()} CUDA device(s)")
    return device


def resolve_device(name: str, local_rank: int = 0, option: str = "train.device") -> torch.device:
    """ "auto" -> this process's GPU (`cuda:<local_rank>`) when there is one, else the CPU; "cuda" -> the
    process's GPU; anything else as `check_device` validates it."""
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    device = check_device(name, option)
    if device.type == "cuda" and device.index is None:
        device = torch.device(f"cuda:{local_rank}")
    return device


def resolve_amp(amp: str, device: torch.device) -> str:
    """train.amp as the trainer runs it: "auto" is bf16 autocast on a CUDA GPU that has bf16 (Ampere and
    later), else none (fp32: on CPUs bf16 is slower without AMX tiles; see configs/demo/base.yaml)."""
    if amp != "auto":
        return amp
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16"
    return "none"


def set_tf32(enabled: bool) -> None:
    """TF32 (10-bit mantissa) for fp32 matmuls and convolutions on CUDA, or IEEE fp32. The backend flags are
    process-wide; on the CPU they change nothing. Uses only torch's newer `fp32_precision` API (mixing it
    with `allow_tf32` is an error in torch)."""
    precision = "tf32" if enabled else "ieee"
    torch.backends.cuda.matmul.fp32_precision = precision
    torch.backends.cudnn.conv.fp32_precision = precision


@contextmanager
def ieee_fp32() -> Iterator[None]:
    """IEEE fp32 matmuls and convolutions inside (evaluation: features and distances are not rounded to TF32
    even when training uses it); the earlier settings are restored after."""
    matmul, conv = torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision
    set_tf32(False)
    try:
        yield
    finally:
        torch.backends.cuda.matmul.fp32_precision = matmul
        torch.backends.cudnn.conv.fp32_precision = conv


def cpus_per_process() -> int:
    """CPU cores this process may use, shared among the processes torchrun starts on this machine
    (LOCAL_WORLD_SIZE)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))


def without_autocast(tensor: torch.Tensor) -> torch.autocast:
    """A region without autocast on `tensor`'s device: maths that bf16 or fp16 would ruin (distances by
    |a|^2 + |b|^2 - 2 a.b, similarities under a temperature, sampling) runs there in fp32, on `.float()`
    inputs."""
    return torch.autocast(tensor.device.type, enabled=False)
