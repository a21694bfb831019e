"""Pose pipeline cost: estimator throughput on ReID crops (mediapipe, rtmlib), and part-heatmap rendering for
one training batch compared with a training step of the paper's default backbone (ResNet-50, 384 x 128,
batch 64, last stride 1 -> 24 x 8 heatmaps). CPU numbers; the machine may be shared, so treat them as rough.

    .venv/bin/python benchmarks/bench_pose.py                  # full run; writes nothing, copy the output to
                                                               # benchmarks/results/bench_pose.md
    .venv/bin/python benchmarks/bench_pose.py --rtmlib-model end2end.onnx   # rtmlib from a local model
    .venv/bin/python benchmarks/bench_pose.py --tiny           # seconds: checks that every part runs, numbers
                                                               # are meaningless

The training step is measured at --step-batch (16 by default: a batch of 64 at ResNet-50 takes ~5-10 s per
step on 2 CPU threads) and scaled linearly to 64; the output says when it is scaled.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from occreid.config import PoseConfig
from occreid.errors import OccreidError
from occreid.pose.heatmaps import feature_map_size, render_part_heatmaps

IMAGE_SIZE = (384, 128)  # the paper's input
BATCH = 64  # the paper's batch (16 identities x 4 images)


def timeit(fn, repeats: int, warmup: int = 2) -> float:
    """Median seconds per call."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def reid_crops(n: int) -> list[np.ndarray]:
    """128 x 64 crops of a real photo (skimage's astronaut) at shifting offsets, so the detector has work to
    do."""
    from PIL import Image
    from skimage.data import astronaut

    photo = astronaut()
    crops = []
    for i in range(n):
        x0 = 40 + (i * 7) % 120
        crops.append(
            np.asarray(Image.fromarray(photo[0:512, x0 : x0 + 256]).resize((64, 128), Image.BILINEAR))
        )
    return crops


def bench_estimator(name: str, n: int, model: str | None = None) -> str:
    """One result line: images/s and the share of crops with a person, or "skipped: <reason>"."""
    from occreid.pose.estimators import build_estimator
    from occreid.pose.estimators.base import has_pose

    try:
        est = build_estimator(name, model=model)
    except (OccreidError, ImportError) as exc:
        flag = " (this script's flag: --rtmlib-model)" if name == "rtmlib" else ""
        return f"{name}: skipped: {exc}{flag}"
    with est:
        images = reid_crops(n)
        est.predict(images[:2])  # warm-up
        t = time.perf_counter()
        out = est.predict(images)
        elapsed = time.perf_counter() - t
        detail = ", ".join(
            f"{k}={v}" for k, v in est.settings.items() if k in ("model", "input_size_wh", "input_height")
        )
    found = sum(has_pose(k) for k in out)
    return f"{name} ({detail}), 128x64 crops: {n / elapsed:.1f} images/s, person found in {found / n:.0%}"


def bench_training_step(batch: int, repeats: int) -> float:
    """Median seconds for one ResNet-50 training step at 384 x 128, last stride 1, bf16 autocast on the CPU:
    occreid's backbone, global average pooling, a 751-way classifier (Market-1501), cross-entropy, SGD.
    PGFL-KD's teacher branches add to this, so the share printed is an upper bound for the full method."""
    from occreid.modeling.backbone import build_backbone

    backbone = build_backbone("resnet50", pretrained=False, last_stride=1)
    head = torch.nn.Linear(backbone.out_channels, 751)
    params = list(backbone.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, *IMAGE_SIZE)
    y = torch.randint(0, 751, (batch,))

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = head(backbone(x).mean(dim=(2, 3)))
            loss = torch.nn.functional.cross_entropy(logits.float(), y)
        loss.backward()
        opt.step()

    return timeit(step, repeats, warmup=1)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=40, help="crops per estimator")
    parser.add_argument("--repeats", type=int, default=20, help="timed heatmap renderings")
    parser.add_argument("--step-batch", type=int, default=16, help="batch the training step is measured at")
    parser.add_argument("--step-repeats", type=int, default=2, help="timed training steps (after 1 warm-up)")
    parser.add_argument(
        "--rtmlib-model",
        default=None,
        help="local .onnx or URL; default rtmlib's RTMPose-m (downloaded on first use, needs a network)",
    )
    parser.add_argument("--tiny", action="store_true", help="smallest sizes, to check the script runs")
    args = parser.parse_args()
    if args.tiny:
        args.images, args.repeats, args.step_batch, args.step_repeats = 3, 2, 2, 1
    torch.manual_seed(0)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU"
        + (" -- TINY RUN, numbers meaningless" if args.tiny else "")
    )

    print("\nestimators (one crop per forward pass)")
    print("  " + bench_estimator("mediapipe", args.images))
    print("  " + bench_estimator("rtmlib", args.images, args.rtmlib_model))

    cfg = PoseConfig()
    keypoints = torch.rand(BATCH, 17, 3) * torch.tensor([float(IMAGE_SIZE[1]), float(IMAGE_SIZE[0]), 1.0])
    rows = []
    for last_stride in (1, 2):
        feat = feature_map_size(IMAGE_SIZE, last_stride)
        for merge in ["max", "sum"]:
            c = cfg.model_copy(update={"merge": merge})
            sec = timeit(
                lambda feat=feat, c=c: render_part_heatmaps(keypoints, IMAGE_SIZE, feat, c), args.repeats
            )
            rows.append((last_stride, f"{feat[0]}x{feat[1]}", merge, sec))
    print(f"\nheatmap rendering, B = {BATCH}, {IMAGE_SIZE[0]}x{IMAGE_SIZE[1]} input, CPU")
    print(f"  {'last stride':<12}| {'feature':<8}| {'merge':<5}| {'ms/batch':>9}")
    for last_stride, feat, merge, sec in rows:
        print(f"  {last_stride:<12}| {feat:<8}| {merge:<5}| {sec * 1e3:>9.2f}")

    step = bench_training_step(args.step_batch, args.step_repeats)
    step64 = step * BATCH / args.step_batch
    scaled = (
        f"measured at batch {args.step_batch} ({args.step_repeats} steps, median), scaled linearly to {BATCH}"
        if args.step_batch != BATCH
        else f"measured at batch {BATCH} ({args.step_repeats} steps, median)"
    )
    render = rows[0][3]  # last stride 1, 24 x 8, merge max (the defaults)
    print(
        f"\nResNet-50 training step, {IMAGE_SIZE[0]}x{IMAGE_SIZE[1]}, last stride 1, bf16 autocast, CPU: "
        f"{step64:.2f} s at batch {BATCH} ({scaled})"
    )
    share = 100 * render / step64
    print(
        f"heatmap rendering (24x8, B={BATCH}, merge max): {render * 1e3:.2f} ms = {share:.3f}% of that step"
    )


if __name__ == "__main__":
    main()
