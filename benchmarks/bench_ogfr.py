"""OGFR against the ViT baseline, side by side in one run.

1. Training-step time with the same backbone and batch: the ViT baseline, and OGFR with its FEPM off, with
   random erasing and with the agent learning (teacher + student + the reward's three no-grad passes of the
   teacher's last blocks + REINFORCE); at the paper scale the baseline and full OGFR only. Steps of the
   compared models alternate (best of `steps`), so the load of a shared machine hits them alike.
2. Inference: parameters, FLOPs and throughput of the deployed student vs the deployed ViT baseline (OGFR adds
   only the pattern head and embeddings).

    python benchmarks/bench_ogfr.py            # vit_tiny (4 blocks) at 128x64, batch 32;
                                                 ViT-B/16 at 256x128, batch 8
    python benchmarks/bench_ogfr.py --quick    # the CPU scale only

fp32. On a shared CPU, set OMP_NUM_THREADS to the free cores (oversubscribed OpenMP threads slow a step >10x).
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
SCALES = {  # name: (backbone, depth, image size, training batch, timed steps)
    "CPU scale": ("vit_tiny_patch16", 4, (128, 64), 32, 5),
    "paper scale": ("vit_base_patch16", 12, (256, 128), 8, 2),
}
VARIANTS = {  # row label: model.name and ogfr overrides
    "ViT baseline": ("baseline", []),
    "OGFR, FEPM off": ("ogfr", ["ogfr.fepm=off"]),
    "OGFR, random erasing": ("ogfr", ["ogfr.fepm=random"]),
    "OGFR, agent learning": ("ogfr", ["ogfr.fepm=agent"]),
}


def config(name: str, backbone: str, depth: int, size: tuple[int, int], *extra: str):
    # 12 blocks: pattern head after 1, agent after 6 (configs/ogfr.yaml); 4 blocks: after 1 and 2 (demo).
    agent_block = 6 if depth >= 12 else 2
    return load_config(
        None,
        [
            f"model.name={name}",
            f"model.backbone={backbone}",
            f"model.vit_depth={depth}",
            "model.pretrained=false",
            f"data.image_size=[{size[0]},{size[1]}]",
            f"ogfr.agent_block={agent_block}",
            "ogfr.agent_warmup_epochs=0",
            *extra,
        ],
    )


def batch_of(size: tuple[int, int], batch: int) -> dict[str, torch.Tensor]:
    h, w = size
    g = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, h, w, generator=g)
    mask = torch.zeros(batch, 1, h, w)
    mask[:, :, h // 2 :] = 1.0
    return {
        "images": images,
        "occluded": images * (1 - mask),
        "occ_mask": mask,
        "pids": torch.arange(batch) // 4,
        "camids": torch.zeros(batch, dtype=torch.long),
        "occ_type": torch.randint(0, 7, (batch,), generator=g),
    }


def trainer_of(cfg, batch: int):
    """A method and its optimisers as the trainer builds them: SGD over its groups + the agent's Adam."""
    torch.manual_seed(0)
    method = build_model(cfg, num_classes=max(batch // 4, 2))
    method.set_epoch(0)
    extra = list(method.extra_optimizers().values())
    owned = {id(p) for opt in extra for g in opt.param_groups for p in g["params"]}
    return method, [
        torch.optim.SGD(method.parameter_groups(1e-4, exclude=owned), lr=0.008, momentum=0.9),
        *extra,
    ]


def step_times(cfgs: dict, size: tuple[int, int], batch: int, steps: int) -> dict[str, float]:
    """Best of `steps` training steps (forward, one backward, every optimiser) per config, after a warm-up
    step. The configs' steps alternate, so a shared machine's load affects all of them alike."""
    runs = {label: trainer_of(cfg, batch) for label, cfg in cfgs.items()}
    data = batch_of(size, batch)
    best = dict.fromkeys(cfgs, float("inf"))
    for repeat in range(steps + 1):
        for label, (method, opts) in runs.items():
            start = time.perf_counter()
            terms = method.training_step(data)
            loss = sum(v for k, v in terms.items() if k not in method.metric_names)
            for opt in opts:
                opt.zero_grad()
            loss.backward()
            for opt in opts:
                opt.step()
            if repeat:
                best[label] = min(best[label], time.perf_counter() - start)
    return best


def inference_rows(backbone: str, depth: int, size: tuple[int, int]) -> list[str]:
    h, w = size
    rows = ["| deployed model | params (M) | GFLOPs / image | images/s (batch 32) |", "|---|---|---|---|"]
    base = None
    for label, name in (("ViT baseline", "baseline"), ("OGFR student", "ogfr")):
        deployed = build_model(config(name, backbone, depth, size), num_classes=100).deploy().eval()
        params, flops = count_parameters(deployed), count_flops(deployed, (1, 3, h, w))
        x = torch.randn(32, 3, h, w)
        with torch.inference_mode():
            deployed(x)
            best = float("inf")
            for _ in range(3):
                start = time.perf_counter()
                deployed(x)
                best = min(best, time.perf_counter() - start)
        base = base or (params, flops)
        rows.append(
            f"| {label} | {params / 1e6:.3f} (+{(params - base[0]) / 1e3:.1f} k) | {flops / 1e9:.4f} "
            f"({flops / base[1]:.4f}x) | {32 / best:.1f} |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    scales = {k: v for k, v in SCALES.items() if not args.quick or k == "CPU scale"}
    lines = [
        f"# OGFR vs the ViT baseline (CPU, fp32, {torch.get_num_threads()} threads)",
        "",
        "## Training step",
        "",
        "| scale | backbone | input | batch | model | s/step | vs ViT baseline |",
        "|---|---|---|---|---|---|---|",
    ]
    for scale, (backbone, depth, size, batch, steps) in scales.items():
        # The paper scale times the two ends only: four ViT-B models with their optimisers need ~8 GB.
        variants = (
            VARIANTS
            if scale == "CPU scale"
            else {k: VARIANTS[k] for k in ("ViT baseline", "OGFR, agent learning")}
        )
        cfgs = {
            label: config(name, backbone, depth, size, *extra) for label, (name, extra) in variants.items()
        }
        times = step_times(cfgs, size, batch, steps)
        for label, t in times.items():
            lines.append(
                f"| {scale} | {backbone} ({depth} blocks) | {size[0]}x{size[1]} | {batch} | {label} | "
                f"{t:.3f} | {t / times['ViT baseline']:.2f}x |"
            )
            print(lines[-1], flush=True)
    lines += ["", "## Inference: the deployed student vs the deployed ViT baseline", ""]
    for scale, (backbone, depth, size, *_) in scales.items():
        lines += [f"{scale}, {backbone} ({depth} blocks) at {size[0]}x{size[1]}:", ""]
        lines += inference_rows(backbone, depth, size) + [""]
    text = "\n".join(lines)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_ogfr.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
