"""One way to turn a device name from a config key or a command-line option into a torch device."""

from __future__ import annotations

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
