"""Pose pipeline cost: mediapipe throughput on ReID crops, and heatmap rendering per training batch compared with
a training step of the backbone. CPU numbers; the machine may be shared, so treat them as rough.

    .venv/bin/python benchmarks/bench_pose.py [--images 40] [--repeats 20]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from occreid.config import PoseConfig
from occreid.pose.heatmaps import render_part_heatmaps


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
    """128 x 64 crops of a real photo (skimage's astronaut) at shifting offsets, so the detector has work to do."""
    from PIL import Image
    from skimage.data import astronaut

    photo = astronaut()
    crops = []
    for i in range(n):
        x0 = 40 + (i * 7) % 120
        crops.append(np.asarray(Image.fromarray(photo[0:512, x0 : x0 + 256]).resize((64, 128), Image.BILINEAR)))
    return crops


def bench_mediapipe(n: int) -> tuple[float, float] | None:
    try:
        from occreid.pose.estimators.mediapipe import MediaPipePose

        est = MediaPipePose()
    except Exception as exc:
        print(f"mediapipe: skipped ({exc})")
        return None
    images = reid_crops(n)
    est.predict(images[:2])
    t = time.perf_counter()
    out = est.predict(images)
    elapsed = time.perf_counter() - t
    found = sum(bool((k[:, 2] > 0).any()) for k in out)
    est.close()
    return n / elapsed, found / n


def bench_backbone_step(arch: str, batch: int, repeats: int) -> float:
    """Seconds for one forward + backward + SGD step at 384 x 128 (last stride 1 as in the paper)."""
    import torchvision

    model = getattr(torchvision.models, arch)(weights=None, num_classes=751)
    model.layer4[0].downsample[0].stride = (1, 1)
    if arch == "resnet50":
        model.layer4[0].conv2.stride = (1, 1)
    else:
        model.layer4[0].conv1.stride = (1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(batch, 3, 384, 128)
    y = torch.randint(0, 751, (batch,))

    def step():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    return timeit(step, repeats, warmup=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")

    mp = bench_mediapipe(args.images)
    if mp is not None:
        print(f"mediapipe BlazePose (full, 128x64 upscaled to 256x256): {mp[0]:.1f} images/s, person found in {mp[1]:.0%}")

    cfg = PoseConfig()
    keypoints = torch.rand(64, 17, 3) * torch.tensor([128.0, 384.0, 1.0])
    rows = []
    for feat in [(24, 8), (8, 4)]:
        for merge in ["max", "sum"]:
            c = cfg.model_copy(update={"merge": merge})
            sec = timeit(lambda feat=feat, c=c: render_part_heatmaps(keypoints, (384, 128), feat, c), args.repeats)
            rows.append((f"{feat[0]}x{feat[1]}", merge, sec * 1e3))
    print("\nheatmap rendering, B = 64, CPU")
    print(f"  {'feature':<8}| {'merge':<5}| {'ms/batch':>9}")
    for feat, merge, ms in rows:
        print(f"  {feat:<8}| {merge:<5}| {ms:>9.2f}")

    step = bench_backbone_step("resnet18", 16, max(2, args.repeats // 10))
    step64 = step * 4  # scaled linearly to a batch of 64
    render = rows[0][2] / 1e3
    print(f"\nResNet-18 training step, 384x128, batch 16 (last stride 1): {step * 1e3:.0f} ms "
          f"-> ~{step64 * 1e3:.0f} ms at batch 64 (linear scaling)")
    print(f"heatmap rendering (24x8, B=64) = {100 * render / step64:.2f}% of that step "
          "(a ResNet-50 step is several times slower, so an even smaller share)")


if __name__ == "__main__":
    main()
