"""Cost of the typed occlusion augmentation (paired views, occreid.data.occlusion) per batch, as a share of a
ViT training step.

Renders SynthOcc (small preset) in a temporary folder, then at each image size, for a batch of 32 (8 x 4):
- loader: a single-process (num_workers = 0) `build_train_loader` epoch with and without `paired_views`, with
  one torch thread as in a DataLoader worker; the difference per batch is what the occluded view adds (its
  draw, the other image it reads, the paste), in CPU time a worker spends;
- per source: the mean time of one draw + paste of each occluder source (the types it can draw, uniformly);
- step: a training step of timm's ViT-Tiny/16 with 6 blocks at that size (forward + cross-entropy on the class
  token + backward + SGD) on the same batch, median of the timed steps. A two-view method (OGFR) runs about
  two such forwards per step, so the share against its step is about half the share printed.

Wall times on a shared machine are noisy; CPU times (`time.process_time`, over all of the process's threads)
are what the work costs whatever else runs, so the CPU share is the robust number.

    python benchmarks/bench_occlusion.py
    python benchmarks/bench_occlusion.py --sizes 128x64 --batches 10 --steps 5
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from occreid.config import Config
from occreid.data.datasets import load_dataset
from occreid.data.loaders import PairedViewDataset, build_train_loader
from occreid.data.occlusion import OcclusionAugment, sources_for
from occreid.data.transforms import build_transforms


def loader_seconds_per_batch(cfg: Config, records: list, batches: int, paired: bool) -> tuple[float, float]:
    """(wall, CPU) seconds per batch of a single-process loader epoch, after one untimed batch."""
    cfg.train.steps_per_epoch = batches + 1
    torch.manual_seed(0)
    iterator = iter(build_train_loader(cfg, records, paired_views=paired, seed=0))
    next(iterator)  # untimed warm-up (imports, first file reads)
    start, cpu = time.perf_counter(), time.process_time()
    count = sum(1 for _ in iterator)
    return (time.perf_counter() - start) / count, (time.process_time() - cpu) / count


def per_source_ms(cfg: Config, records: list, draws: int) -> dict[str, float]:
    """Mean ms of one draw + paste per source, over `draws` draws of each source alone (every type it can
    draw, uniformly; `other_image` reads and resizes another training image for image/background)."""
    out = {}
    for source in cfg.occlusion.sources:
        c = cfg.model_copy(deep=True)
        c.occlusion.sources = (source,)
        c.occlusion.types = tuple(
            t for t in c.occlusion.types if sources_for(t, (source,))
        )  # all it can draw
        augment = OcclusionAugment(c.occlusion, c.data.image_size, c.data.mean, c.data.std)
        dataset = PairedViewDataset(records, build_transforms(c.data, train=True), augment)
        x = dataset[0]["images"]
        torch.manual_seed(0)
        start = time.perf_counter()
        for _ in range(draws):
            augment.paste(x, augment.sample(lambda dataset=dataset: dataset.other_image(-1)))
        out[source] = (time.perf_counter() - start) / draws * 1e3
    return out


def vit_step_seconds(size: tuple[int, int], batch: int, steps: int, num_classes: int) -> tuple[float, float]:
    """(wall, CPU over all threads) seconds of one step, medians over `steps` after two untimed steps."""
    import timm

    torch.manual_seed(0)
    model = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, img_size=size, depth=6, num_classes=num_classes
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.008, momentum=0.9)
    images = torch.randn(batch, 3, *size)
    labels = torch.randint(0, num_classes, (batch,))
    times, cpus = [], []
    for i in range(steps + 2):
        start, cpu = time.perf_counter(), time.process_time()
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if i >= 2:  # two untimed warm-up steps
            times.append(time.perf_counter() - start)
            cpus.append(time.process_time() - cpu)
    return statistics.median(times), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", nargs="+", default=["128x64", "256x128"], help="HxW")
    parser.add_argument("--batches", type=int, default=20, help="timed loader batches per setting")
    parser.add_argument("--draws", type=int, default=100, help="timed draws per source")
    parser.add_argument("--steps", type=int, default=10, help="timed ViT steps per size")
    args = parser.parse_args()

    from occreid.data.synthocc import generate

    with tempfile.TemporaryDirectory(prefix="occreid_bench_occ_") as tmp:
        generate(Path(tmp) / "synthocc", preset="small", seed=0, workers=1, progress=False)
        threads = torch.get_num_threads()
        dataset = load_dataset("synthocc", Path(tmp) / "synthocc")
        records = dataset.train
        print(
            f"SynthOcc small: {len(records)} training images; batch 8 x 4 = 32; torch {torch.__version__}; "
            f"loader: num_workers = 0 with 1 thread, as a worker runs (the augmentation's own CPU cost); "
            f"ViT step: {threads} threads"
        )
        rows = []
        for size in args.sizes:
            height, width = (int(v) for v in size.lower().split("x"))
            cfg = Config()
            cfg.data.image_size = (height, width)
            cfg.data.p, cfg.data.k, cfg.data.num_workers = 8, 4, 0
            torch.set_num_threads(1)  # as in a DataLoader worker (torch gives each worker one thread)
            plain = loader_seconds_per_batch(cfg, records, args.batches, paired=False)
            paired = loader_seconds_per_batch(cfg, records, args.batches, paired=True)
            sources = per_source_ms(cfg, records, args.draws)
            torch.set_num_threads(threads)
            step = vit_step_seconds((height, width), 32, args.steps, dataset.num_train_pids)
            rows.append((size, plain, paired, step))
            print(
                f"\n{size}: per-source ms per occluder (draw + paste): "
                + ", ".join(f"{k} {v:.2f}" for k, v in sources.items())
            )
        print("\nwall s (CPU s): loader, paired loader, what paired views add (per batch); one ViT step")
        print(
            f"{'size':>8} | {'loader':>13} | {'paired':>13} | {'added':>13} | {'ViT step':>13} | "
            f"{'added/step wall':>15} | {'added/step CPU':>14}"
        )
        print("-" * 107)
        for size, plain, paired, step in rows:
            added = (paired[0] - plain[0], paired[1] - plain[1])
            cells = [f"{w:.3f} ({c:.3f})" for w, c in (plain, paired, added, step)]
            print(
                f"{size:>8} | "
                + " | ".join(f"{c:>13}" for c in cells)
                + f" | {added[0] / step[0]:>15.1%} | {added[1] / step[1]:>14.1%}"
            )


if __name__ == "__main__":
    main()
