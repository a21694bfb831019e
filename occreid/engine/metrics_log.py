"""What a run folder records beside the checkpoints: metrics as JSON lines (and TensorBoard scalars), and the
environment the run trained in."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from occreid.utils.distributed import DistInfo


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

    `resume_step`: the step of the checkpoint a run continues from; records written after it (by the part of
    an epoch that was interrupted and will run again) are dropped, so no step appears twice. None: a new run.
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
