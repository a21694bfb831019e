"""The training state beside the weights in a checkpoint: the RNG states that make a resumed run repeat an
uninterrupted one."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def rng_state(device: torch.device | None = None) -> dict[str, Any]:
    """RNG states of torch (the CPU's, and the CUDA state of `device` alone when it is a GPU), numpy and
    Python, in a form `weights_only` loading accepts. Only this process's GPU: a run resumed on fewer GPUs
    than it was saved on must find every state it sets."""
    np_state = np.random.get_state()
    on_gpu = device is not None and device.type == "cuda"
    return {
        "torch": torch.get_rng_state(),
        "cuda": [torch.cuda.get_rng_state(device)] if on_gpu else [],
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2])},
        "python": random.getstate()[1],
    }


def set_rng_state(state: dict[str, Any], device: torch.device | None = None) -> None:
    """Restore `rng_state`'s generators; on a GPU `device`, its CUDA state is the first one saved (the
    saving process's own; in checkpoints of older versions, which kept every visible GPU's, GPU 0's).
    Load the checkpoint with map_location="cpu": the states are CPU tensors."""
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"][0].cpu(), device)
    keys = state["numpy"]["keys"].cpu().numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, state["numpy"]["pos"], 0, 0.0))
    random.setstate((3, tuple(state["python"]), None))
