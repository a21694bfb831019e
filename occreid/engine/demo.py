"""`occreid demo`: the main job on the built-in data, on a CPU in about ten minutes.

SynthOcc (occluded protocol, ground-truth keypoints) -> train Baseline and PGFL-KD with the same small backbone,
schedule and seed -> evaluate both on occluded queries with f_G only (no pose at test) -> a side-by-side table
(Rank-1, mAP, mINP, parameters, FLOPs, ms per query of the deployed model), `results.json`, and `report.md`
with training curves, ranked lists and feature-response maps.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from occreid.config import Config, load_config
from occreid.engine.checkpoint import load_deployed_model
from occreid.engine.evaluate import EvalOutput, evaluate_features, extract_features
from occreid.engine.trainer import train

MODELS = ("baseline", "pgfl_kd")
TITLES = {"baseline": "Baseline", "pgfl_kd": "PGFL-KD"}


def _reusable_data(root: Path, seed: int) -> bool:
    """A complete SynthOcc of this generator version, preset and seed is at `root`."""
    from occreid.data.synthocc.generate import VERSION

    meta = root / "synthocc.json"
    if not meta.is_file():
        return False
    try:
        settings = json.loads(meta.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
    wanted = {"seed": seed, "protocol": "occluded", "preset": "default", "version": VERSION}
    return isinstance(settings, dict) and all(settings.get(key) == value for key, value in wanted.items())


def _make_data(root: Path, seed: int, overwrite: bool = False) -> None:
    """SynthOcc (default preset, occluded protocol) at `root`, reused when a complete one of this generator
    version and seed is already there; another one there is replaced only with `overwrite`."""
    from occreid.data.synthocc import generate as generate_synthocc

    if _reusable_data(root, seed):
        print(f"reusing SynthOcc at {root}")
        return
    print(f"generating SynthOcc (occluded protocol, seed {seed}) at {root}")
    generate_synthocc(root, preset="default", seed=seed, protocol="occluded", force=overwrite)


DEMO_OUTPUTS = ("results.json", "report.md", "curves.png", "response_maps.png", "ranked_baseline", "ranked_pgfl_kd")


def _check_out(out: Path, seed: int, overwrite: bool) -> None:
    """Before any work: an --out holding an earlier demo (runs, report, other SynthOcc data) is refused unless
    `overwrite` (the rule of occreid.engine.rundir)."""
    from occreid.engine.rundir import check_writable_dir, run_files
    from occreid.errors import OccreidError

    check_writable_dir(out, "--out")
    if overwrite:
        return
    found = [out / name / p.name for name in MODELS for p in run_files(out / name)]
    found += [out / name for name in DEMO_OUTPUTS if (out / name).exists()]
    data = out / "synthocc"
    if data.exists() and any(data.iterdir()) and not _reusable_data(data, seed):
        found.append(data)
    if found:
        raise OccreidError(
            f"--out {out} already holds an earlier demo ({', '.join(str(p.relative_to(out)) for p in found[:4])}"
            f"{', ...' if len(found) > 4 else ''}); pass --overwrite to replace it, or choose another --out"
        )


@torch.inference_mode()
def _ms_per_query(model: nn.Module, cfg: Config, query_paths: list[str], gallery_feats: torch.Tensor) -> float:
    """Wall time of one query end to end: load, preprocess, forward at batch 1 (in the precision the evaluation
    uses, cfg.train.amp), rank the whole gallery."""
    from PIL import Image

    from occreid.data.transforms import build_transforms

    transform = build_transforms(cfg.data, train=False)
    gallery = nn.functional.normalize(gallery_feats, dim=1)
    amp = torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.train.amp == "bf16")
    times = []
    for path in query_paths[:5] + query_paths[:30]:  # the first 5 calls warm up (allocator, oneDNN kernels)
        start = time.perf_counter()
        image, _ = transform(Image.open(path).convert("RGB"), None)
        with amp:
            feat = nn.functional.normalize(model(image[None]).float(), dim=1)
        torch.argsort(torch.cdist(feat, gallery)[0])
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times[5:]))


def _curves(runs: dict[str, Path], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_map) = plt.subplots(1, 2, figsize=(10, 3.5))
    for name, run_dir in runs.items():
        records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        train_recs = [r for r in records if r["kind"] == "train"]
        eval_recs = [r for r in records if r["kind"] == "eval"]
        ax_loss.plot([r["step"] for r in train_recs], [r["loss"] for r in train_recs], label=TITLES[name])
        ax_map.plot([r["epoch"] for r in eval_recs], [100 * r["mAP"] for r in eval_recs], "o-", label=TITLES[name])
    ax_loss.set(xlabel="step", ylabel="total training loss", yscale="log", title="training loss")
    ax_map.set(xlabel="epoch", ylabel="mAP (%)", title="mAP on occluded queries (f_G)")
    for ax in (ax_loss, ax_map):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


@torch.inference_mode()
def _response_maps(models: dict[str, nn.Module], cfg: Config, paths: list[str], out: Path) -> None:
    """Channel-mean activation of F over each image (the paper's Figures 1 and 4), per model."""
    import matplotlib
    from PIL import Image

    from occreid.data.transforms import build_transforms

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    transform = build_transforms(cfg.data, train=False)
    h, w = cfg.data.image_size
    fig, axes = plt.subplots(len(models) + 1, len(paths), figsize=(1.3 * len(paths), 2.6 * (len(models) + 1)))
    for col, path in enumerate(paths):
        image = Image.open(path).convert("RGB").resize((w, h))
        tensor, _ = transform(Image.open(path).convert("RGB"), None)
        axes[0, col].imshow(image)
        for row, model in enumerate(models.values(), start=1):
            fmap = model.forward_features(tensor[None]).float().mean(1, keepdim=True)  # (1, 1, h', w')
            fmap = nn.functional.interpolate(fmap, size=(h, w), mode="bilinear", align_corners=False)[0, 0]
            fmap = (fmap - fmap.min()) / (fmap.max() - fmap.min() + 1e-8)
            axes[row, col].imshow(image)
            axes[row, col].imshow(fmap.numpy(), cmap="jet", alpha=0.5)
        for row in range(len(models) + 1):
            axes[row, col].axis("off")
    for row, name in enumerate(["image", *[TITLES[n] for n in models]]):
        axes[row, 0].set_title(name, loc="left", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


POSE_FEATURES = ("f_P", "f_V", "f_F", "f_E")


class _PoseFeatures(nn.Module):
    """PGFL-KD's pose-at-test features (Table 8) from one forward pass, concatenated in POSE_FEATURES order."""

    def __init__(self, method: nn.Module) -> None:
        super().__init__()
        self.method = method

    def forward(self, images: torch.Tensor, keypoints: torch.Tensor) -> torch.Tensor:
        branches = self.method.branches(images, keypoints)
        return torch.cat([self.method.test_feature(branches, name) for name in POSE_FEATURES], dim=1)


def _pose_at_test(checkpoint: Path, dataset) -> dict[str, dict[str, float]]:
    """PGFL-KD's pose-based test features (Table 8) with SynthOcc's ground-truth keypoints: what f_G is
    distilled from, to see how much of it the pose-free model keeps."""
    from occreid.config import apply_overrides
    from occreid.engine.checkpoint import load_method
    from occreid.engine.trainer import keypoints_for

    method, cfg = load_method(checkpoint, "cpu")
    model, device = _PoseFeatures(method), torch.device("cpu")
    qf = extract_features(model, dataset.query, cfg, device, keypoints_for(dataset, dataset.query, None), desc="query")
    gf = extract_features(model, dataset.gallery, cfg, device, keypoints_for(dataset, dataset.gallery, None),
                          desc="gallery")  # fmt: skip
    out = {}
    for feature, q, g in zip(POSE_FEATURES, qf.chunk(len(POSE_FEATURES), 1), gf.chunk(len(POSE_FEATURES), 1)):
        feature_cfg = apply_overrides(cfg, [f"model.test_feature={feature}"])
        r = evaluate_features(q, g, dataset.query, dataset.gallery, feature_cfg).result
        out[feature] = {"rank1": float(r.cmc[0]), "mAP": float(r.mAP), "mINP": float(r.mINP)}
    return out


def _table(rows: dict[str, dict[str, Any]]) -> str:
    header = "| model | Rank-1 | Rank-5 | mAP | mINP | params (M) | GFLOPs | ms / query |"
    lines = [header, "|" + "---|" * 8]
    for name, r in rows.items():
        lines.append(
            f"| {TITLES[name]} | {100 * r['rank1']:.1f} | {100 * r['rank5']:.1f} | {100 * r['mAP']:.1f} | "
            f"{100 * r['mINP']:.1f} | {r['params'] / 1e6:.2f} | {r['flops'] / 1e9:.3f} | {r['ms_per_query']:.1f} |"
        )
    pose = rows.get("pgfl_kd", {}).get("pose_at_test", {})
    for feature, r in pose.items():
        lines.append(f"| PGFL-KD, {feature} with pose at test (not deployable pose-free) | {100 * r['rank1']:.1f} | - | "
                     f"{100 * r['mAP']:.1f} | {100 * r['mINP']:.1f} | - | - | - |")  # fmt: skip
    return "\n".join(lines)


def run_demo(out: Path, seed: int = 0, epochs: int | None = None, overwrite: bool = False) -> dict[str, dict[str, Any]]:
    from occreid.data.datasets import load_dataset
    from occreid.evaluation import visualize_ranked_results
    from occreid.modeling.complexity import count_flops, count_parameters

    started = time.perf_counter()
    out = Path(out)
    _check_out(out, seed, overwrite)
    data_root = out / "synthocc"
    _make_data(data_root, seed, overwrite)

    runs: dict[str, Path] = {}
    cfgs: dict[str, Config] = {}
    for name in MODELS:
        overrides = [f"data.root={data_root}", f"train.seed={seed}", f"train.output_dir={out / name}"]
        if epochs is not None:
            overrides.append(f"train.epochs={epochs}")
        cfg = load_config(f"configs/demo/{name}.yaml", overrides)
        print(f"\n=== training {TITLES[name]} ===")
        t0 = time.perf_counter()
        train(cfg, overwrite=overwrite)
        print(f"{TITLES[name]} trained in {time.perf_counter() - t0:.0f} s")
        runs[name], cfgs[name] = out / name, cfg

    dataset = load_dataset("synthocc", data_root)
    rows: dict[str, dict[str, Any]] = {}
    deployed: dict[str, nn.Module] = {}
    outputs: dict[str, EvalOutput] = {}
    for name in MODELS:
        model, cfg = load_deployed_model(runs[name] / "last.pt")
        device = torch.device("cpu")
        qf = extract_features(model, dataset.query, cfg, device, desc="query")
        gf = extract_features(model, dataset.gallery, cfg, device, desc="gallery")
        output = evaluate_features(qf, gf, dataset.query, dataset.gallery, cfg)
        h, w = cfg.data.image_size
        r = output.result
        rows[name] = {
            "rank1": float(r.cmc[0]), "rank5": float(r.cmc[4]), "rank10": float(r.cmc[9]),
            "mAP": float(r.mAP), "mINP": float(r.mINP),
            "params": count_parameters(model), "flops": count_flops(model, (1, 3, h, w)),
            "ms_per_query": _ms_per_query(model, cfg, [q.path for q in dataset.query], gf),
            "settings": output.settings, "seed": seed, "epochs": cfg.train.epochs, "backbone": cfg.model.backbone,
        }  # fmt: skip
        deployed[name], outputs[name] = model, output
    rows["pgfl_kd"]["pose_at_test"] = _pose_at_test(runs["pgfl_kd"] / "last.pt", dataset)

    table = _table(rows)
    print("\n" + table)
    (out / "results.json").write_text(json.dumps(rows, indent=2))

    # ---- report
    _curves(runs, out / "curves.png")
    names = sorted({Path(q.path).name for q in dataset.query})[:: max(1, len(dataset.query) // 6)][:6]
    ranked = {}
    for name in MODELS:
        o = outputs[name]
        ranked[name] = visualize_ranked_results(
            o.distmat, o.query_paths, o.gallery_paths,
            np.array([q.pid for q in dataset.query]), np.array([g.pid for g in dataset.gallery]),
            np.array([q.camid for q in dataset.query]), np.array([g.camid for g in dataset.gallery]),
            out / f"ranked_{name}", topk=8, select=names,
        )  # fmt: skip
    _response_maps(deployed, cfgs["baseline"], [str(data_root / "query" / n) for n in names], out / "response_maps.png")
    lines = [
        "# occreid demo: Baseline vs PGFL-KD on SynthOcc (occluded protocol)", "",
        f"Seed {seed}; {cfgs['baseline'].model.backbone} from scratch at {cfgs['baseline'].data.image_size[0]}x"
        f"{cfgs['baseline'].data.image_size[1]}, {cfgs['baseline'].train.epochs} epochs each, same schedule. "
        "Both evaluated with f_G only: the deployed models take images only, no pose.", "",
        f"{len(dataset.query)} occluded queries, {len(dataset.gallery)} gallery images; settings: "
        f"`{json.dumps(rows['baseline']['settings'])}`", "",
        table, "", "## Training curves", "", "![curves](curves.png)", "",
        "## Feature-response maps (channel mean of F; cf. the paper's Figures 1 and 4)", "",
        "![response maps](response_maps.png)", "", "## Ranked lists (green: same identity, red: different)", "",
    ]  # fmt: skip
    for name in MODELS:
        lines += [f"### {TITLES[name]}", ""] + [f"![{Path(p).stem}]({Path(p).relative_to(out)})" for p in ranked[name]]
        lines.append("")
    (out / "report.md").write_text("\n".join(lines))
    print(f"\nreport: {out / 'report.md'}; results: {out / 'results.json'}; "
          f"total {time.perf_counter() - started:.0f} s")  # fmt: skip
    return rows
