"""The ViT baseline's training step at the CPU scale and at the paper's scale, with the
deployed model's parameters, FLOPs and throughput; the MobileNetV2 CNN baseline beside them for reference.

    python benchmarks/bench_vit.py            # CPU scale (128 x 64, batch 32) and
                                                ViT-B/16 (256 x 128, batch 8)
    python benchmarks/bench_vit.py --quick    # CPU scale only

A step is forward + backward + Adam on a random batch of P x K = batch/4 x 4 identities, fp32; the time is the
fastest of `--steps` after one warm-up step (the least disturbed by other work on the machine).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from occreid.config import load_config
from occreid.methods import build_model
from occreid.modeling.complexity import count_flops, count_parameters

RESULTS = Path(__file__).parent / "results"

CPU_SCALE = [  # (label, overrides) at 128 x 64, batch 32
    ("MobileNetV2 CNN baseline (last stride 1)", ["model.backbone=mobilenet_v2"]),
    ("ViT hybrid: MobileNetV2 stem + 4 blocks, D 192", ["model.backbone=vit_hybrid_mnv2"]),
    ("ViT-Tiny/16, 6 blocks", ["model.backbone=vit_tiny_patch16", "model.vit_depth=6"]),
]
PAPER_SCALE = [  # (label, overrides) at 256 x 128, batch 8
    ("ViT-B/16, stride 16 (16 x 8 patches)", ["model.backbone=vit_base_patch16", "model.vit_stride=16"]),
    ("ViT-B/16, stride 12 (21 x 10 patches)", ["model.backbone=vit_base_patch16", "model.vit_stride=12"]),
]


def measure(overrides: list[str], size: tuple[int, int], batch: int, steps: int) -> dict[str, float]:
    h, w = size
    cfg = load_config(
        None, ["model.name=baseline", "model.pretrained=false", f"data.image_size=[{h},{w}]", *overrides]
    )
    torch.manual_seed(0)
    method = build_model(cfg, num_classes=max(batch // 4, 2))
    opt = torch.optim.Adam(method.parameters(), lr=3.5e-4)
    data = {
        "images": torch.randn(batch, 3, h, w),
        "pids": torch.arange(batch) // 4,
        "camids": torch.zeros(batch, dtype=torch.long),
    }
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        terms = method.training_step(data)
        loss = sum(v for k, v in terms.items() if k not in method.metric_names)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
    deployed = method.deploy()
    x = torch.randn(batch, 3, h, w)
    with torch.inference_mode():
        deployed(x)
        start = time.perf_counter()
        deployed(x)
        per_image = (time.perf_counter() - start) / batch
    return {
        "step_s": min(times[1:]),
        "params_m": count_parameters(deployed) / 1e6,
        "gflops": count_flops(deployed, (1, 3, h, w)) / 1e9,
        "images_per_s": 1 / per_image,
    }


def table(rows: list[tuple[str, dict[str, float]]]) -> str:
    lines = [
        "| model | step (s) | deployed params (M) | GFLOPs / image | images/s at test |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, r in rows:
        lines.append(
            f"| {label} | {r['step_s']:.3f} | {r['params_m']:.2f} | {r['gflops']:.2f} | "
            f"{r['images_per_s']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CPU scale only")
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    sections = [("CPU scale: 128 x 64, batch 32", CPU_SCALE, (128, 64), 32)]
    if not args.quick:
        sections.append(
            ("Paper scale: 256 x 128, batch 8 (the recipe's batch is 64)", PAPER_SCALE, (256, 128), 8)
        )
    text = [f"# bench_vit (torch {torch.__version__}, {torch.get_num_threads()} threads, fp32)", ""]
    for title, models, size, batch in sections:
        rows = [(label, measure(overrides, size, batch, args.steps)) for label, overrides in models]
        text += [f"## {title}", "", table(rows), ""]
        print("\n".join(text[-4:]), flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_vit.md").write_text("\n".join(text))


if __name__ == "__main__":
    main()
