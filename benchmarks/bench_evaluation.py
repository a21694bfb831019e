"""Evaluation speed and memory: occreid.evaluation.evaluate_rank vs the classic per-query loop.

Each variant runs in its own subprocess. Peak memory is measured around the timed step only (`PeakMemory`):
the kernel's resident high-water mark (VmHWM) is reset through /proc/self/clear_refs just before the step, so
the data generation and inputs do not hide the step's own peak; "extra" = peak during the step minus the
resident size at its start, "total" = the process's peak during the step (inputs included). Linux only.
Features are synthetic 2048-d identity clusters (noise tuned to give ReID-like mAP), generated before timing.

What is timed:
- "ours (incl. distance)": compute_distance(qf, gf) (float32 GEMM, squared Euclidean) + evaluate_rank.
- "ours (eval only)": evaluate_rank on a precomputed float32 distance matrix.
- "reference loop": torchreid's numpy eval_market1501 (full argsort, then a loop over queries) on the same
  precomputed matrix, i.e. WITHOUT the distance matrix; the "incl. distance" speed-up is therefore
  conservative.

    python benchmarks/bench_evaluation.py          # prints a markdown table, saves
                                                     benchmarks/results/bench_evaluation.md
    python benchmarks/bench_evaluation.py --quick  # tiny sizes, checks the script runs; writes no
                                                     results file
"""

from __future__ import annotations

import ctypes
import gc
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

QUICK = "--quick" in sys.argv
SIZES = {  # name: (queries, gallery, identities, cameras)
    "Occluded-Duke": (2210, 17661, 1110, 8),
    "Market-1501": (3368, 15913, 751, 6),
}
DIM = 2048
if QUICK:
    SIZES = {"quick": (200, 1500, 100, 4)}
    DIM = 256


def _status_mb(field: str) -> float:
    """A memory field of /proc/self/status (VmRSS, VmHWM) in MB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # the kernel reports kB
    raise RuntimeError(f"/proc/self/status has no {field}")


class PeakMemory:
    """Peak resident memory of a `with` block, on Linux.

    On entry: collect garbage, return freed heap pages to the OS (malloc_trim), reset the high-water mark
    VmHWM to the current resident size (writing "5" to /proc/self/clear_refs) and record that size. On exit:
    `total_mb` = VmHWM (the process's peak during the block, inputs included), `extra_mb` = total_mb - the
    size at entry (what the block itself needed on top of what was already resident).
    """

    def __enter__(self) -> PeakMemory:
        gc.collect()
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
        except OSError as exc:
            raise SystemExit(f"peak memory needs Linux's /proc/self/clear_refs ({exc})") from None
        self.before_mb = _status_mb("VmRSS")
        return self

    def __exit__(self, *exc) -> None:
        self.total_mb = _status_mb("VmHWM")
        self.extra_mb = self.total_mb - self.before_mb


def reference_eval_market1501(distmat, q_pids, g_pids, q_camids, g_camids, max_rank):
    """torchreid's pure-numpy eval_market1501 (full argsort, then a loop over queries), with INP added."""
    import numpy as np

    indices = np.argsort(distmat, axis=1)
    matches = (g_pids[indices] == q_pids[:, np.newaxis]).astype(np.int32)
    all_cmc, all_ap, all_inp = [], [], []
    for q_idx in range(distmat.shape[0]):
        order = indices[q_idx]
        remove = (g_pids[order] == q_pids[q_idx]) & (g_camids[order] == q_camids[q_idx])
        raw_cmc = matches[q_idx][np.invert(remove)]
        if not np.any(raw_cmc):
            continue
        cmc = raw_cmc.cumsum()
        pos_idx = np.where(raw_cmc == 1)[0]
        all_inp.append(cmc[pos_idx.max()] / (pos_idx.max() + 1.0))
        cmc[cmc > 1] = 1
        all_cmc.append(cmc[:max_rank])
        num_rel = raw_cmc.sum()
        tmp_cmc = raw_cmc.cumsum()
        tmp_cmc = [x / (i + 1.0) for i, x in enumerate(tmp_cmc)]
        all_ap.append((np.asarray(tmp_cmc) * raw_cmc).sum() / num_rel)
    return np.asarray(all_cmc).astype(np.float32).mean(0), float(np.mean(all_ap)), float(np.mean(all_inp))


def make_data(num_q, num_g, num_ids, num_cams, seed=0):
    import numpy as np
    import torch

    rng = np.random.default_rng(seed)
    centres = torch.from_numpy(rng.standard_normal((num_ids, DIM)).astype(np.float32))
    q_pids, g_pids = rng.integers(0, num_ids, num_q), rng.integers(0, num_ids, num_g)
    q_cams, g_cams = rng.integers(0, num_cams, num_q), rng.integers(0, num_cams, num_g)
    gen = torch.Generator().manual_seed(seed)
    qf = centres[q_pids] + 3.0 * torch.randn(num_q, DIM, generator=gen)
    gf = centres[g_pids] + 3.0 * torch.randn(num_g, DIM, generator=gen)
    return qf, gf, q_pids, g_pids, q_cams, g_cams


def run_variant(variant: str, size: str) -> dict:
    from occreid.evaluation import compute_distance, evaluate_rank

    qf, gf, q_pids, g_pids, q_cams, g_cams = make_data(*SIZES[size])
    pre_dist = compute_distance(qf, gf).numpy() if variant != "ours (incl. distance)" else None
    with PeakMemory() as mem:
        start = time.perf_counter()
        if variant == "reference loop":
            cmc, m_ap, m_inp = reference_eval_market1501(pre_dist, q_pids, g_pids, q_cams, g_cams, 50)
            rank1 = float(cmc[0])
        else:
            dist = pre_dist if pre_dist is not None else compute_distance(qf, gf)
            r = evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams, max_rank=50)
            rank1, m_ap, m_inp = r.rank(1), r.mAP, r.mINP
        seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "extra_peak_mb": mem.extra_mb,
        "total_peak_mb": mem.total_mb,
        "rank1": rank1,
        "mAP": m_ap,
        "mINP": m_inp,
    }


def main() -> None:
    args = [a for a in sys.argv[1:] if a != "--quick"]
    if len(args) == 2:  # child process: one variant
        print(json.dumps(run_variant(args[0], args[1])))
        return
    variants = ["ours (incl. distance)", "ours (eval only)", "reference loop"]
    lines = [
        (
            f"Evaluation, {DIM}-d synthetic features, max_rank=50; "
            f"{platform.processor() or platform.machine()}, python {platform.python_version()}. Each variant "
            "in a fresh process; memory is the resident high-water mark (VmHWM, reset just before the timed "
            "step): extra = peak during the step minus the resident size before it, total = whole-process "
            f"peak during the step. Timed: 'incl. distance' = compute_distance ({DIM}-d float32 GEMM) + "
            "evaluate_rank; 'eval only' and the reference loop start from the same precomputed distance "
            "matrix."
        ),
        "",
        "| dataset size | variant | time (s) | peak extra (MB) | total peak (MB) | Rank-1 | mAP | mINP "
        "| speed-up vs reference |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size in SIZES:
        rows = {}
        for variant in variants:
            cmd = [sys.executable, __file__, variant, size] + (["--quick"] if QUICK else [])
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            rows[variant] = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{size} / {variant}: {rows[variant]['seconds']:.2f} s", file=sys.stderr)
        ref = rows["reference loop"]["seconds"]
        for variant, r in rows.items():
            q, g = SIZES[size][:2]
            lines.append(
                f"| {size} ({q} x {g}) | {variant} | {r['seconds']:.2f} | {r['extra_peak_mb']:.0f} | "
                f"{r['total_peak_mb']:.0f} | {100 * r['rank1']:.2f} | {100 * r['mAP']:.2f} | "
                f"{100 * r['mINP']:.2f} | {ref / r['seconds']:.1f}x |"
            )
    table = "\n".join(lines)
    print(table)
    if QUICK:
        return
    out_path = Path(__file__).parent / "results" / "bench_evaluation.md"
    out_path.parent.mkdir(exist_ok=True)
    out_path.write_text(table + "\n")


if __name__ == "__main__":
    main()
