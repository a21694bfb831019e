"""Training data-loader throughput: P x K batches (default 4 x 16 = 64 images) per second.

Generates a few hundred random Market-sized JPEGs (128x64, named like `0001_c1s1_000001_00.jpg`) in a
temporary folder, then times `build_train_loader` (full train transform: resize, flip, pad + crop, normalise,
random erasing, with keypoints) at each output size and worker count. The first batch of each run (worker
start-up) is not timed.

    python benchmarks/bench_dataloader.py
    python benchmarks/bench_dataloader.py --batches 50 --workers 0 2 4 --sizes 384x128 256x128
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from occreid.config import Config
from occreid.data.loaders import build_train_loader
from occreid.data.records import ImageRecord


def make_images(root: Path, num_ids: int, per_id: int, seed: int = 0) -> list[ImageRecord]:
    """Random-noise-over-gradient 128x64 JPEGs, Market-style names."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 160, 128, dtype=np.float32)[:, None, None]
    records = []
    for pid in range(num_ids):
        for j in range(per_id):
            pixels = ramp + rng.normal(48, 40, (128, 64, 3)).astype(np.float32)
            path = root / f"{pid + 1:04d}_c{j % 6 + 1}s1_{j + 1:06d}_00.jpg"
            Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(path, quality=90)
            records.append(ImageRecord(str(path), pid, j % 6))
    return records


def time_loader(cfg: Config, records: list[ImageRecord], keypoints: list[np.ndarray], batches: int) -> float:
    """Batches per second over `batches` batches, after one untimed warm-up batch."""
    cfg.train.steps_per_epoch = batches + 1
    loader = build_train_loader(cfg, records, keypoints, seed=0)
    iterator = iter(loader)
    next(iterator)
    start = time.perf_counter()
    count = sum(1 for _ in iterator)
    elapsed = time.perf_counter() - start
    del iterator, loader
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ids", type=int, default=20, help="identities to generate")
    parser.add_argument("--per-id", type=int, default=16, help="images per identity")
    parser.add_argument("--p", type=int, default=4)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--batches", type=int, default=20, help="timed batches per setting")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sizes", nargs="+", default=["384x128", "128x64"], help="HxW output sizes")
    args = parser.parse_args()

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="occreid_bench_") as tmp:
        records = make_images(Path(tmp), args.ids, args.per_id)
        keypoints = [
            np.concatenate([rng.uniform([0, 0], [64, 128], (17, 2)), rng.uniform(0, 1, (17, 1))], 1).astype(
                "f4"
            )
            for _ in records
        ]
        print(
            f"{len(records)} JPEGs 128x64, batch {args.p}x{args.k} = {args.p * args.k} images, "
            f"{args.batches} timed batches, torch {torch.__version__}, {torch.get_num_threads()} threads"
        )
        print(f"{'size (HxW)':>11} | {'workers':>7} | {'batches/s':>9} | {'images/s':>8}")
        print("-" * 45)
        for size in args.sizes:
            height, width = (int(v) for v in size.lower().split("x"))
            for workers in args.workers:
                cfg = Config()
                cfg.data.image_size = (height, width)
                cfg.data.p, cfg.data.k = args.p, args.k
                cfg.data.num_workers = workers
                rate = time_loader(cfg, records, keypoints, args.batches)
                print(f"{size:>11} | {workers:>7} | {rate:>9.2f} | {rate * args.p * args.k:>8.0f}")


if __name__ == "__main__":
    main()
