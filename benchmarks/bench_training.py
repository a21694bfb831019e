"""PGFL-KD against the baseline, side by side in one run.

1. Training-step time with the same backbone and batch (target: PGFL-KD at most 1.2x the baseline).
2. Share of a step spent loading data (SynthOcc, the real loader) and rendering part heatmaps.
3. Inference: parameters, FLOPs and throughput of the deployed model of each (should be 1.0x), and of a
   pose-at-test pipeline, HRNet-W32 -> keypoints -> f_E (the paper's Table 8: about 3x the FLOPs).

    python benchmarks/bench_training.py            # ResNet-18 at 128x64 and ResNet-50 at 384x128
    python benchmarks/bench_training.py --quick    # ResNet-18 only
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from occreid.config import load_config
from occreid.methods import build_model
from occreid.modeling.complexity import count_flops, count_parameters, inference_cost
from occreid.pose.heatmaps import render_part_heatmaps

RESULTS = Path(__file__).parent / "results"


class PoseNet(torch.nn.Module):
    """Stand-in for the paper's estimator, HRNet-W32 at 256x192 (Sun et al., CVPR 2019: 28.5 M parameters,
    7.1 GMACs): timm's HRNet-W32 body (random weights, no download) with a 1x1 head to 17 heatmaps at
    stride 4, decoded by arg-max. Its cost is what a pose-at-test pipeline pays; its keypoints are
    meaningless."""

    def __init__(self) -> None:
        super().__init__()
        import timm

        self.body = timm.create_model(
            "hrnet_w32", pretrained=False, features_only=True, feature_location="", out_indices=(1,)
        )
        self.head = torch.nn.Conv2d(32, 17, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) person crops -> (B, 17, 3) keypoints (x, y in input pixels, confidence)."""
        h, w = images.shape[-2:]
        crops = torch.nn.functional.interpolate(images, size=(256, 192), mode="bilinear", align_corners=False)
        heat = self.head(self.body(crops)[0]).flatten(2)  # (B, 17, 64 * 48)
        conf, index = heat.sigmoid().max(dim=2)
        x, y = (index % 48).float() * w / 48, (index // 48).float() * h / 64
        return torch.stack([x, y, conf], dim=2)


def _keypoints(batch: int, h: int, w: int) -> torch.Tensor:
    """Plausible standing-person keypoints with a few low-confidence ones, in input pixels."""
    g = torch.Generator().manual_seed(0)
    base = torch.tensor(
        [
            [0.5, 0.1],
            [0.45, 0.08],
            [0.55, 0.08],
            [0.4, 0.1],
            [0.6, 0.1],
            [0.35, 0.25],
            [0.65, 0.25],
            [0.3, 0.4],
            [0.7, 0.4],
            [0.3, 0.52],
            [0.7, 0.52],
            [0.4, 0.55],
            [0.6, 0.55],
            [0.4, 0.75],
            [0.6, 0.75],
            [0.4, 0.95],
            [0.6, 0.95],
        ]
    )
    xy = base[None].repeat(batch, 1, 1) * torch.tensor([w, h]) + torch.randn(batch, 17, 2, generator=g) * 2
    conf = (torch.rand(batch, 17, 1, generator=g) > 0.2).float()
    return torch.cat([xy, conf], dim=2)


def step_times(backbone: str, size: tuple[int, int], batch: int, steps: int, amp: bool) -> dict[str, float]:
    h, w = size
    out = {}
    for name in ("baseline", "pgfl_kd"):
        cfg = load_config(
            None,
            [
                f"model.name={name}",
                f"model.backbone={backbone}",
                "model.pretrained=false",
                f"data.image_size=[{h},{w}]",
            ],
        )
        torch.manual_seed(0)
        method = build_model(cfg, num_classes=max(batch // 4, 2))
        opt = torch.optim.Adam(method.parameters(), lr=3.5e-4)
        data = {
            "images": torch.randn(batch, 3, h, w),
            "pids": torch.arange(batch) // 4,
            "keypoints": _keypoints(batch, h, w),
        }
        times = []
        for _ in range(steps + 1):
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                terms = method.training_step(data)
            loss = sum(v for k, v in terms.items() if k not in method.metric_names)
            opt.zero_grad()
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - start)
        out[name] = min(times[1:])  # the first step warms up
    return out


def render_time(batch: int, size: tuple[int, int], feature: tuple[int, int]) -> float:
    cfg = load_config(None, [])
    kpts = _keypoints(batch, *size)
    render_part_heatmaps(kpts, size, feature, cfg.pose)
    start = time.perf_counter()
    for _ in range(20):
        render_part_heatmaps(kpts, size, feature, cfg.pose)
    return (time.perf_counter() - start) / 20


def loader_time(size: tuple[int, int], p: int, k: int, batches: int) -> float:
    from occreid.data.datasets import load_dataset
    from occreid.data.loaders import build_train_loader
    from occreid.data.splits import keypoints_for
    from occreid.data.synthocc import generate as generate_synthocc

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "synthocc"
        generate_synthocc(root, preset="small", seed=0, protocol="occluded")
        cfg = load_config(
            None,
            [
                f"data.root={root}",
                f"data.image_size=[{size[0]},{size[1]}]",
                f"data.p={p}",
                f"data.k={k}",
                "data.num_workers=0",
                f"train.steps_per_epoch={batches + 1}",
            ],
        )
        ds = load_dataset("synthocc", root)
        loader = build_train_loader(cfg, ds.train, keypoints_for(ds, ds.train, None))
        it = iter(loader)
        next(it)
        start = time.perf_counter()
        for _ in range(batches):
            next(it)
        return (time.perf_counter() - start) / batches


def inference_table(backbone: str, size: tuple[int, int]) -> list[str]:
    """Deployed models of both methods, and a pose-at-test pipeline (PoseNet -> keypoints -> f_E), each run on
    a batch of 32 images: parameters, FLOPs per image and measured images/s."""
    h, w = size
    rows = ["| model | params (M) | GFLOPs / image | images/s (batch 32) |", "|---|---|---|---|"]
    base_flops = None
    pose_net = PoseNet().eval()
    pose_params, pose_flops = count_parameters(pose_net), count_flops(pose_net, (1, 3, h, w))
    for name, feature in (("baseline", "f_G"), ("pgfl_kd", "f_G"), ("pgfl_kd", "f_E")):
        cfg = load_config(
            None,
            [
                f"model.name={name}",
                f"model.backbone={backbone}",
                "model.pretrained=false",
                f"data.image_size=[{h},{w}]",
            ],
        )
        method = build_model(cfg, num_classes=100).eval()
        if feature == "f_G":
            deployed = method.deploy().eval()
            params, flops = count_parameters(deployed), count_flops(deployed, (1, 3, h, w))
            run = deployed
            label = f"{name} deployed (f_G, no pose)"
        else:
            cost = inference_cost(method, feature, (h, w))
            params, flops = cost["params"] + pose_params, cost["flops"] + pose_flops
            run = lambda x, method=method: method(x, pose_net(x))
            label = f"{name} pose at test: HRNet-W32 (256x192) -> keypoints -> f_E"
        x = torch.randn(32, 3, h, w)
        with torch.inference_mode():
            run(x)
            best = float("inf")
            for _ in range(3):
                start = time.perf_counter()
                run(x)
                best = min(best, time.perf_counter() - start)
        base_flops = base_flops or flops
        rows.append(
            f"| {label} | {params / 1e6:.2f} | {flops / 1e9:.3f} ({flops / base_flops:.2f}x) | "
            f"{32 / best:.1f} |"
        )
    rows += [
        "",
        f"HRNet-W32 stand-in: {pose_params / 1e6:.1f} M parameters, {pose_flops / 2e9:.2f} GMACs per image "
        "(the published pose HRNet-W32: 28.5 M, 7.1 GMACs at 256x192).",
    ]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    settings = [("resnet18", (128, 64), 32, 5)]
    if not args.quick:
        settings.append(("resnet50", (384, 128), 16, 2))
    lines = [
        "# Training step: PGFL-KD vs baseline (CPU, bf16 autocast)",
        "",
        "| backbone | input | batch | baseline s/step | PGFL-KD s/step | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for backbone, size, batch, steps in settings:
        t = step_times(backbone, size, batch, steps, amp=True)
        lines.append(
            f"| {backbone} | {size[0]}x{size[1]} | {batch} | {t['baseline']:.3f} | {t['pgfl_kd']:.3f} | "
            f"{t['pgfl_kd'] / t['baseline']:.2f}x |"
        )
        print(lines[-1], flush=True)
    t18 = step_times("resnet18", (128, 64), 32, 3, amp=True)["pgfl_kd"]
    load = loader_time((128, 64), 8, 4, 10)
    render = render_time(32, (128, 64), (8, 4))
    render64 = render_time(64, (384, 128), (24, 8))
    lines += [
        "",
        "# Share of a PGFL-KD step (ResNet-18, 128x64, batch 32, data.num_workers=0)",
        "",
        "| part | seconds | share of step |",
        "|---|---|---|",
        f"| data loading (SynthOcc, decode + augment, 1 process) | {load:.4f} | {load / (t18 + load):.1%} |",
        f"| heatmap rendering (8x4 map) | {render:.5f} | {render / t18:.2%} |",
        f"| heatmap rendering, batch 64 at 384x128 (24x8 map) | {render64:.5f} | - |",
        "",
        "# Inference: deployed models vs a pose-at-test pipeline",
        "",
    ]
    for backbone, size, *_ in settings:
        lines += [f"{backbone} at {size[0]}x{size[1]}:", ""] + inference_table(backbone, size) + [""]
    text = "\n".join(lines)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "training.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
