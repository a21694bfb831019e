"""Gallery search latency on 100,000 gallery vectors (2048-d): GalleryIndex torch exact vs faiss flat.

python benchmarks/bench_search.py              # markdown table, also saved to benchmarks/results/bench_search.md
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

NUM_GALLERY, DIM, TOPK = 100_000, 2048, 10


def main() -> None:
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
    lines = [
        (
            f"Search, {NUM_GALLERY:,} gallery vectors x {DIM}-d, top-{TOPK}, squared Euclidean, exact. "
            "Single = one query per call (median of 20); batch = 100 queries in one call (per-query time)."
        ),
        "",
        "| backend | single query (ms) | batch of 100 (ms / query) | agrees with torch |",
        "|---|---:|---:|---|",
    ]
    reference = index.search(queries[1:], TOPK, backend="torch")[1]
    for backend in backends:
        index.search(queries[:1], TOPK, backend=backend)  # warm-up (faiss builds its index here)
        single = []
        for i in range(20):
            t = time.perf_counter()
            index.search(queries[i : i + 1], TOPK, backend=backend)
            single.append(time.perf_counter() - t)
        t = time.perf_counter()
        _, idx = index.search(queries[1:], TOPK, backend=backend)
        batch = (time.perf_counter() - t) / 100
        agree = "yes" if np.array_equal(idx, reference) else f"{(idx == reference).mean():.4f} of results"
        lines.append(f"| {backend} | {1000 * np.median(single):.1f} | {1000 * batch:.2f} | {agree} |")
        print(lines[-1])
    table = "\n".join(lines)
    print(table)
    out_path = Path(__file__).parent / "results" / "bench_search.md"
    out_path.parent.mkdir(exist_ok=True)
    out_path.write_text(table + "\n")


if __name__ == "__main__":
    main()
