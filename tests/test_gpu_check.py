"""benchmarks/gpu_check.sh: its CPU rehearsal (--dry-run) runs every check's Python at toy sizes, one "ok"
line each; without a GPU the real run is one clear line per check."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"

pytestmark = pytest.mark.slow


def _run(*args: str, **env: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", **env}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, cwd=ROOT)


def test_the_dry_run_passes_every_check_with_one_line_each():
    proc = _run("--dry-run")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[0] == "skip cuda tests: dry run"
    methods, precisions = ("baseline", "pgfl_kd", "vit_baseline", "ogfr"), ("fp32", "tf32", "bf16")
    expected = [
        *[f"ok   gpu_check step {m} {p}:" for m in methods for p in precisions],
        "ok   gpu_check ogfr fp16 agent warm-up: ok",
        "ok   gpu_check ddp 2 processes: ok on gloo (CPU): identical weights",
        "ok   gpu_check resume 2 -> 1 process: ok: epochs 3",
        "ok   gpu_check resume: ok",
        "ok   gpu_check eval plain 50x300:",
        "ok   gpu_check eval re-ranked 50x300:",
    ]
    assert len(lines) == 1 + len(expected), lines
    for line, start in zip(lines[1:], expected):
        assert line.startswith(start), (line, start)
    assert "max |weight difference| 0 " in proc.stdout  # resumed = uninterrupted, bit for bit on the CPU


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_without_a_gpu_each_check_fails_with_one_line():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "eval"], capture_output=True, text=True
    )
    assert proc.returncode != 0
    assert proc.stderr.strip() == (
        "error: no CUDA GPU visible to torch; run with --dry-run for the CPU rehearsal"
    )


def test_a_python_without_occreid_is_one_line_and_status_2():
    proc = _run("--dry-run", PYTHON="/bin/false")
    assert proc.returncode == 2
    assert proc.stdout.strip().startswith("error: /bin/false cannot import occreid")
