"""Gallery search latency on 100,000 gallery vectors (2048-d): GalleryIndex torch exact vs faiss flat.

In the same run every backend's results for 100 queries are checked against brute force: the full
(100, 100,000) squared-Euclidean distance matrix in float64 (chunked GEMM) and a stable argsort. Memory per
backend is measured as in bench_evaluation.py (`PeakMemory`: the resident high-water mark VmHWM is reset
before the backend's first call): "extra" = peak during its calls (first-call setup, e.g. faiss building its
index, included) minus the resident size before them (the 800 MB gallery included), "total" = whole-process
peak during them. Linux only.

    python benchmarks/bench_search.py          # markdown table, also saved to
                                                 benchmarks/results/bench_search.md
    python benchmarks/bench_search.py --quick  # 5,000 x 256-d, checks the script runs; writes no results file
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_evaluation import PeakMemory  # noqa: E402 (the same measurement in every benchmark)

QUICK = "--quick" in sys.argv
NUM_GALLERY, DIM, TOPK = (5_000, 256, 10) if QUICK else (100_000, 2048, 10)


def brute_force(queries: np.ndarray, gallery: np.ndarray, k: int, chunk: int = 8192):
    """(distances, indices) of the k nearest by squared Euclidean distance: full float64 matrix + stable
    argsort."""
    q = queries.astype(np.float64)
    q_sq = np.einsum("ij,ij->i", q, q)
    dist = np.empty((len(q), len(gallery)))
    for s in range(0, len(gallery), chunk):
        g = gallery[s : s + chunk].astype(np.float64)
        dist[:, s : s + chunk] = q_sq[:, None] + np.einsum("ij,ij->i", g, g)[None, :] - 2.0 * (q @ g.T)
    idx = np.argsort(dist, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(dist, idx, axis=1), idx


def main() -> None:
    import torch  # noqa: F401 (imported before any measurement: its ~500 MB are not search memory)

    from occreid.evaluation import GalleryIndex

    rng = np.random.default_rng(0)
    gallery = rng.standard_normal((NUM_GALLERY, DIM), dtype=np.float32)
    queries = rng.standard_normal((101, DIM), dtype=np.float32)
    index = GalleryIndex(metric="euclidean")
    index.add(gallery, [f"{i}.jpg" for i in range(NUM_GALLERY)])
    backends = ["torch"]
    try:
        import faiss  # noqa: F401

        backends.append("faiss")
    except ImportError:
        print("faiss not installed: pip install occreid[faiss]")
    t = time.perf_counter()
    ref_dist, ref_idx = brute_force(queries[1:], gallery, TOPK)
    brute_seconds = time.perf_counter() - t
    lines = [
        (
            f"Search, {NUM_GALLERY:,} gallery vectors x {DIM}-d, top-{TOPK}, squared Euclidean, exact. "
            "Single = one query per call (median of 20); batch = 100 queries in one call (per-query time). "
            "Checked in this run against brute force (full float64 distance matrix + stable argsort, "
            f"{brute_seconds:.1f} s for the 100 queries): 'equals brute force' compares the top-{TOPK} "
            "indices of the batch call, and max |d - d_brute| their distances. Memory = resident high-water "
            "mark over the backend's calls (first-call setup included): extra over the resident size before "
            "them, and the whole-process peak."
        ),
        "",
        "| backend | single query (ms) | batch of 100 (ms / query) | equals brute force | max abs distance "
        "diff | peak extra (MB) | total peak (MB) |",
        "|---|---:|---:|---|---:|---:|---:|",
    ]
    for backend in backends:
        with PeakMemory() as mem:
            index.search(queries[:1], TOPK, backend=backend)  # warm-up (faiss builds its index here)
            single = []
            for i in range(20):
                t = time.perf_counter()
                index.search(queries[i : i + 1], TOPK, backend=backend)
                single.append(time.perf_counter() - t)
            t = time.perf_counter()
            dist, idx = index.search(queries[1:], TOPK, backend=backend)
            batch = (time.perf_counter() - t) / 100
        same = np.array_equal(idx, ref_idx)
        agree = "yes (all indices)" if same else f"no: {(idx == ref_idx).mean():.4f} of indices"
        lines.append(
            f"| {backend} | {1000 * np.median(single):.1f} | {1000 * batch:.2f} | {agree} | "
            f"{np.abs(dist - ref_dist).max():.1e} | {mem.extra_mb:.0f} | {mem.total_mb:.0f} |"
        )
        print(lines[-1], file=sys.stderr)
    table = "\n".join(lines)
    print(table)
    if QUICK:
        return
    out_path = Path(__file__).parent / "results" / "bench_search.md"
    out_path.parent.mkdir(exist_ok=True)
    out_path.write_text(table + "\n")


if __name__ == "__main__":
    main()
