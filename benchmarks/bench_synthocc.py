"""SynthOcc generation speed (images/s with 1 and 2 worker processes) for a preset, and how hard the benchmark
is for a trivial whole-image matcher (colour histograms, Euclidean rank-1 / mAP) under each protocol. CPU
numbers on a possibly shared machine: treat them as rough.

    .venv/bin/python benchmarks/bench_synthocc.py [--preset default] [--seed 0]
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from occreid.data.synthocc import generate

NAME = re.compile(r"([-\d]+)_c(\d)")


def colour_histograms(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, 6*64) L2-normalised RGB histograms (4x4x4 bins) of 6 horizontal stripes, pids (N,), cams (N,)."""
    feats, pids, cams = [], [], []
    for f in sorted(folder.iterdir()):
        arr = np.asarray(Image.open(f).convert("RGB")) // 64
        codes = arr[..., 0] * 16 + arr[..., 1] * 4 + arr[..., 2]
        h = np.concatenate([np.bincount(s.ravel(), minlength=64) for s in np.array_split(codes, 6, axis=0)])
        feats.append(np.sqrt(h / h.sum()))
        pid, cam = map(int, NAME.search(f.name).groups())
        pids.append(pid)
        cams.append(cam)
    return np.array(feats), np.array(pids), np.array(cams)


def rank1_map(root: Path) -> tuple[float, float]:
    """Market protocol: gallery images of the query's pid and camera are ignored."""
    qf, qp, qc = colour_histograms(root / "query")
    gf, gp, gc = colour_histograms(root / "bounding_box_test")
    dist = ((qf[:, None] - gf[None]) ** 2).sum(-1)
    r1, aps = [], []
    for i in range(len(qf)):
        keep = ~((gp == qp[i]) & (gc == qc[i]))
        order = np.argsort(dist[i][keep], kind="stable")
        match = (gp[keep] == qp[i])[order]
        r1.append(match[0])
        hits = np.cumsum(match)
        aps.append(float((hits[match] / (np.nonzero(match)[0] + 1)).mean()))
    return float(np.mean(r1)), float(np.mean(aps))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2):
            out = Path(tmp) / f"w{workers}"
            t = time.perf_counter()
            info = generate(
                out, preset=args.preset, seed=args.seed, protocol="occluded", workers=workers, progress=False
            )
            seconds = time.perf_counter() - t
            n = sum(c["images"] for c in info["counts"].values())
            rows.append((workers, n, seconds))
        print(f"SynthOcc generation, preset {args.preset} (shared 2-core CPU; rough)")
        print("| workers | images | seconds | images/s |\n|---|---|---|---|")
        for workers, n, seconds in rows:
            print(f"| {workers} | {n} | {seconds:.1f} | {n / seconds:.0f} |")

        print(f"\nWhole-image colour-histogram matcher (no learning), preset {args.preset}, seed {args.seed}")
        print("| protocol | rank-1 | mAP |\n|---|---|---|")
        for protocol in ("holistic", "occluded", "partial"):
            out = Path(tmp) / protocol
            generate(out, preset=args.preset, seed=args.seed, protocol=protocol, workers=2, progress=False)
            r1, mAP = rank1_map(out)
            print(f"| {protocol} | {100 * r1:.1f} | {100 * mAP:.1f} |")


if __name__ == "__main__":
    main()
