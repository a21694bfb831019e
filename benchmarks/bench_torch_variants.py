"""The torch inference path, model only: eager against channels_last and torch.compile, on the CPU.

Whether either is worth turning on in `FeatureExtractor`'s torch runtime. Models with random weights (speed
does not depend on them): the demo's MobileNetV2 Baseline and OGFR student at 128 x 64, ResNet-50 at
256 x 128. Each round times every variant once on the same (B, 3, H, W) batch, in turn (interleaved); the
median of --runs rounds after warm-up; torch.compile's first call (the compilation) is timed apart. The
largest difference of each variant's features from eager's, relative to the largest feature value, is
reported too.

    python benchmarks/bench_torch_variants.py            # writes benchmarks/results/bench_torch_variants.md
    python benchmarks/bench_torch_variants.py --quick    # 2 rounds, batch 8, MobileNetV2 only; no file
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import torch
from bench_inference import random_checkpoint

from occreid.inference.models import load_inference_model

MODELS = {  # label -> random-checkpoint key of bench_inference.RANDOM
    "MobileNetV2 Baseline (demo), 128 x 64": "baseline_random",
    "OGFR student (demo), 128 x 64": "ogfr_random",
    "ResNet-50 Baseline, 256 x 128": "resnet50",
}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "bench_torch_variants.md")
    p.add_argument("--quick", action="store_true")
    return p.parse_args()


def variants(model: torch.nn.Module) -> dict[str, tuple[torch.nn.Module, bool]]:
    """name -> (module, whether its input goes channels_last)."""
    last = copy.deepcopy(model).to(
        memory_format=torch.channels_last
    )  # the same weights, NHWC (.to is in place)
    return {
        "eager": (model, False),
        "channels_last": (last, True),
        "torch.compile": (torch.compile(model), False),
    }


def time_variants(model: torch.nn.Module, batch: torch.Tensor, runs: int) -> list[dict]:
    """Per variant: images/s (median round), compile seconds, largest |feature - eager's|."""
    with torch.inference_mode():
        reference = model(batch)
        rows, runners = [], variants(model)
        for name, (module, nhwc) in runners.items():
            x = batch.contiguous(memory_format=torch.channels_last) if nhwc else batch
            t0 = time.perf_counter()
            out = module(x)  # warm-up; for torch.compile, the compilation
            first = time.perf_counter() - t0
            diff = float((out - reference).abs().max() / reference.abs().max())
            rows.append({"variant": name, "first_s": first, "diff": diff})
        times: dict[str, list[float]] = {name: [] for name in runners}
        for _ in range(runs):
            for name, (module, nhwc) in runners.items():
                x = batch.contiguous(memory_format=torch.channels_last) if nhwc else batch
                t0 = time.perf_counter()
                module(x)
                times[name].append(time.perf_counter() - t0)
    for row in rows:
        row["img_s"] = len(batch) / statistics.median(times[row["variant"]])
    return rows


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    models = dict(list(MODELS.items())[:1]) if args.quick else MODELS
    runs, batch_size = (2, 8) if args.quick else (args.runs, args.batch)
    lines = [
        "# The torch inference path: eager, channels_last and torch.compile (model only, CPU)",
        "",
        f"Batch {batch_size}, {args.threads} intra-op threads, median of {runs} interleaved rounds; torch "
        f"{torch.__version__}; {_load()}. The variants alternate in one process, so their ratios hold even "
        "when other jobs share the CPU; the absolute rates do not.",
        "",
        "| model | variant | images/s | vs eager | first call (s) | max diff from eager (relative) |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for label, key in models.items():
            loaded = load_inference_model(random_checkpoint(key, Path(tmp)), device="cpu")
            h, w = loaded.image_size
            batch = torch.randn(batch_size, 3, h, w, generator=torch.Generator().manual_seed(0))
            rows = time_variants(loaded.model.eval(), batch, runs)
            eager = rows[0]["img_s"]
            for r in rows:
                lines.append(
                    f"| {label} | {r['variant']} | {r['img_s']:.0f} | {r['img_s'] / eager:.2f}x "
                    f"| {r['first_s']:.1f} | {r['diff']:.1e} |"
                )
                print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.quick:
        args.out.write_text(text)


def _load() -> str:
    with open("/proc/loadavg") as fh:
        return f"1-min load average {fh.read().split()[0]} at the end"


if __name__ == "__main__":
    main()
