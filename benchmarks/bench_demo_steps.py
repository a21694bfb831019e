"""The demo's four models: one training step and feature extraction in NCHW against NHWC
(`train.channels_last`).

A real SynthOcc batch (the demo's loader: P x K = 8 x 4, 128 x 64, paired views for OGFR, keypoints for
PGFL-KD), forward + backward of the method's summed loss terms; extraction: the deployed model on 128 images.
Median of `--repeats` timed calls after one warm-up; run it on a quiet machine.

    python benchmarks/bench_demo_steps.py [--data runs/demo/synthocc] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from functools import partial
from pathlib import Path

import torch

from occreid.apps.demo.run import MODELS
from occreid.config import load_config
from occreid.data.datasets import load_dataset
from occreid.data.loaders import build_train_loader
from occreid.data.splits import keypoints_for
from occreid.engine.trainer import _to_device
from occreid.methods import build_model

RESULTS = Path(__file__).parent / "results"


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up: allocator, oneDNN kernels
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _train_step(method, batch: dict) -> None:
    terms = method.training_step(batch)
    sum(v for k, v in terms.items() if k not in method.metric_names and v.requires_grad).backward()
    method.zero_grad(set_to_none=True)


@torch.inference_mode()
def _extract(deployed: torch.nn.Module, images: torch.Tensor) -> None:
    deployed(images)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", type=Path, default=Path("runs/demo/synthocc"), help="a SynthOcc (occreid synth)"
    )
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    dataset = load_dataset("synthocc", args.data)
    rows = [
        "| model | step NCHW (s) | step NHWC (s) | speed-up | extract 128 NCHW (s) | extract 128 NHWC (s) |",
        "|---|---|---|---|---|---|",
    ]
    for demo_model in MODELS:
        cfg = load_config(demo_model.config, [f"data.root={args.data}"])
        torch.manual_seed(0)
        method = build_model(cfg, dataset.num_train_pids).train()
        needs = method.batch_needs()
        kpts = keypoints_for(dataset, dataset.train, None) if needs.keypoints else None
        loader = build_train_loader(cfg, dataset.train, kpts, paired_views=needs.paired_views)
        loader.batch_sampler.set_epoch(0)
        batch = next(iter(loader))
        images = torch.randn(128, 3, *cfg.data.image_size)
        step, extract = {}, {}
        for layout in (torch.contiguous_format, torch.channels_last):
            nhwc = layout == torch.channels_last
            method = method.to(memory_format=layout)
            on_device = _to_device(batch, torch.device("cpu"), nhwc)

            deployed = method.deploy().eval()
            test_images = images.contiguous(memory_format=layout)
            step[nhwc] = _median_seconds(partial(_train_step, method, on_device), args.repeats)
            extract[nhwc] = _median_seconds(partial(_extract, deployed, test_images), args.repeats)
        rows.append(
            f"| {demo_model.title} | {step[False]:.3f} | {step[True]:.3f} | {step[False] / step[True]:.2f}x "
            f"| {extract[False]:.3f} | {extract[True]:.3f} |"
        )
        print(rows[-1], flush=True)
    text = "\n".join(
        [
            "# The demo's models in NCHW and NHWC",
            "",
            f"`python benchmarks/bench_demo_steps.py --repeats {args.repeats}`, "
            f"{torch.get_num_threads()} threads, batch {cfg.data.p * cfg.data.k} at "
            f"{cfg.data.image_size[0]} x {cfg.data.image_size[1]}.",
            "",
            *rows,
        ]
    )
    print("\n" + text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_demo_steps.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
