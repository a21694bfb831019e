"""`occreid demo`: the main job on the built-in data, on a CPU in about ten minutes.

SynthOcc (occluded protocol, ground-truth keypoints) -> train every model of MODELS (Baseline and PGFL-KD on an
ImageNet-pretrained MobileNetV2; the ViT baseline and OGFR on the hybrid ViT with that MobileNetV2 stem) with the
same data, schedule and seed -> evaluate each on occluded queries with its deployed model (images only: no pose,
no holistic teacher) -> one table (Rank-1, mAP, mINP, parameters, FLOPs, ms per query, and PGFL-KD's
pose-at-test features of Table 8), a table by the query's occluder type, `results.json`, and `report.md` with
training curves, ranked lists, the CNNs' response maps, the ViTs' attention maps and the tokens OGFR's agent
erases. A new model is one more DemoModel in MODELS.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from occreid.config import Config, load_config
from occreid.engine.checkpoint import load_deployed_model
from occreid.engine.evaluate import EvalOutput, evaluate_features, extract_features
from occreid.engine.trainer import train
from occreid.modeling.vit import VIT_ARCHS

POSE_FEATURES = ("f_P", "f_V", "f_F", "f_E")


@dataclass(frozen=True)
class DemoModel:
    """One model of the demo, trained on the shared SynthOcc with the shared seed."""

    key: str  # run folder under --out, key in results.json
    title: str
    config: str  # a packaged config (occreid/configs/...)
    pose_features: tuple[str, ...] = ()  # pose-at-test features (Table 8) reported beside its f_G


MODELS: list[DemoModel] = [
    DemoModel("baseline", "Baseline", "configs/demo/baseline.yaml"),
    DemoModel("pgfl_kd", "PGFL-KD", "configs/demo/pgfl_kd.yaml", pose_features=POSE_FEATURES),
    DemoModel("vit_baseline", "ViT baseline", "configs/demo/vit_baseline.yaml"),
    DemoModel("ogfr", "OGFR", "configs/demo/ogfr.yaml"),
]


def _reusable(root: Path, seed: int) -> bool:
    """Whether `root` holds a complete SynthOcc of this generator version made with the demo's settings (seed,
    default preset, occluded protocol, not an unseen-occluder split)."""
    from occreid.data.synthocc.generate import VERSION

    meta = root / "synthocc.json"
    if not meta.is_file():
        return False
    try:
        settings = json.loads(meta.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
    # train_occluders is absent from datasets written before the unseen-occluder split existed: None as well
    wanted = {
        "seed": seed,
        "protocol": "occluded",
        "preset": "default",
        "version": VERSION,
        "train_occluders": None,
    }
    return isinstance(settings, dict) and all(settings.get(key) == value for key, value in wanted.items())


def _make_data(root: Path, seed: int, overwrite: bool = False) -> None:
    """SynthOcc (default preset, occluded protocol) at `root`, reused when `_reusable`; another one there is
    replaced only with `overwrite`."""
    from occreid.data.synthocc import generate as generate_synthocc

    if _reusable(root, seed):
        print(f"reusing SynthOcc at {root}")
        return
    print(f"generating SynthOcc (occluded protocol, seed {seed}) at {root}")
    generate_synthocc(root, preset="default", seed=seed, protocol="occluded", force=overwrite)


DEMO_OUTPUTS = (
    "results.json",
    "report.md",
    "curves.png",
    "response_maps.png",
    "attention_maps.png",
    *(f"ranked_{m.key}" for m in MODELS),
    *(f"erased_tokens_{m.key}.png" for m in MODELS),
)


def _check_out(out: Path, seed: int, overwrite: bool) -> None:
    """Before any work: an --out holding an earlier demo (runs, report, other SynthOcc data) is refused unless
    `overwrite` (the rule of occreid.engine.rundir)."""
    from occreid.engine.rundir import check_writable_dir, run_files
    from occreid.errors import OccreidError

    check_writable_dir(out, "--out")
    if overwrite:
        return
    found = [out / m.key / p.name for m in MODELS for p in run_files(out / m.key)]
    found += [out / name for name in DEMO_OUTPUTS if (out / name).exists()]
    data = out / "synthocc"
    if data.exists() and any(data.iterdir()) and not _reusable(data, seed):
        found.append(data)
    if found:
        raise OccreidError(
            f"--out {out} already holds an earlier demo ({', '.join(str(p.relative_to(out)) for p in found[:4])}"
            f"{', ...' if len(found) > 4 else ''}); pass --overwrite to replace it, or choose another --out"
        )


@torch.inference_mode()
def _ms_per_query(
    model: nn.Module, cfg: Config, query_paths: list[str], gallery_feats: torch.Tensor
) -> float:
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


def _curves(runs: dict[str, Path], titles: dict[str, str], out: Path) -> None:
    """Each model's total training loss per logged step (the demo evaluates once, at the end: see the table)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, run_dir in runs.items():
        records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        train_recs = [r for r in records if r["kind"] == "train"]
        ax.plot([r["step"] for r in train_recs], [r["loss"] for r in train_recs], label=titles[name])
    ax.set(xlabel="step", ylabel="total training loss", yscale="log", title="training loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


@torch.inference_mode()
def _response_maps(
    models: dict[str, nn.Module], titles: dict[str, str], cfg: Config, paths: list[str], out: Path
) -> None:
    """Channel-mean activation of F over each image (the paper's Figures 1 and 4), per CNN model (a ViT's tokens
    are layer-normalised, so their channel mean says nothing; its attention maps are drawn instead)."""
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
    for row, name in enumerate(["image", *[titles[n] for n in models]]):
        axes[row, 0].set_title(name, loc="left", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


class _PoseFeatures(nn.Module):
    """PGFL-KD's pose-at-test features (Table 8) from one forward pass, concatenated in `features` order."""

    def __init__(self, method: nn.Module, features: tuple[str, ...]) -> None:
        super().__init__()
        self.method, self.features = method, features

    def forward(self, images: torch.Tensor, keypoints: torch.Tensor) -> torch.Tensor:
        branches = self.method.branches(images, keypoints)
        return torch.cat([self.method.test_feature(branches, name) for name in self.features], dim=1)


def pose_at_test(
    checkpoint: Path, dataset, features: tuple[str, ...] = POSE_FEATURES
) -> dict[str, dict[str, float]]:
    """PGFL-KD's pose-based test features (Table 8) with SynthOcc's ground-truth keypoints: what f_G is
    distilled from, to see how much of it the pose-free model keeps. Features the model's switches do not
    produce (f_P / f_V without model.sab, f_F / f_E without model.feb) are left out."""
    from occreid.config import apply_overrides
    from occreid.engine.checkpoint import load_method
    from occreid.engine.trainer import keypoints_for

    method, cfg = load_method(checkpoint, "cpu")
    branch = {"f_P": "sab", "f_V": "sab", "f_F": "feb", "f_E": "feb"}
    features = tuple(f for f in features if cfg.model.name == "pgfl_kd" and getattr(cfg.model, branch[f]))
    if not features:
        return {}
    model, device = _PoseFeatures(method, features), torch.device("cpu")
    qf = extract_features(
        model, dataset.query, cfg, device, keypoints_for(dataset, dataset.query, None), desc="query"
    )
    gf = extract_features(
        model, dataset.gallery, cfg, device, keypoints_for(dataset, dataset.gallery, None), desc="gallery"
    )
    out = {}
    for feature, q, g in zip(features, qf.chunk(len(features), 1), gf.chunk(len(features), 1)):
        feature_cfg = apply_overrides(cfg, [f"model.test_feature={feature}"])
        r = evaluate_features(q, g, dataset.query, dataset.gallery, feature_cfg).result
        out[feature] = {"rank1": float(r.cmc[0]), "mAP": float(r.mAP), "mINP": float(r.mINP)}
    return out


def _table(rows: dict[str, dict[str, Any]]) -> str:
    """One line per model (f_G, deployed), then each model's pose-at-test features."""
    header = "| model | test feature | Rank-1 | Rank-5 | mAP | mINP | params (M) | GFLOPs | ms / query |"
    lines = [header, "|" + "---|" * 9]
    for r in rows.values():
        lines.append(
            f"| {r['title']} | f_G | {100 * r['rank1']:.1f} | {100 * r['rank5']:.1f} | {100 * r['mAP']:.1f} | "
            f"{100 * r['mINP']:.1f} | {r['params'] / 1e6:.2f} | {r['flops'] / 1e9:.3f} | {r['ms_per_query']:.1f} |"
        )
    for r in rows.values():
        for feature, p in r.get("pose_at_test", {}).items():
            lines.append(
                f"| {r['title']} | {feature}, pose at test (not deployable pose-free) | "
                f"{100 * p['rank1']:.1f} | - | {100 * p['mAP']:.1f} | {100 * p['mINP']:.1f} | - | - | - |"
            )
    return "\n".join(lines)


def _type_table(rows: dict[str, dict[str, Any]]) -> str:
    """mAP / Rank-1 of each model's deployed f_G on the queries of each occluder type (against the whole
    gallery), the number of such queries in the header."""
    types = list(next(iter(rows.values()))["per_type"])
    if not types:
        return ""
    counts = next(iter(rows.values()))["per_type_queries"]
    lines = [
        "| model | " + " | ".join(f"{t} ({counts[t]} q.)" for t in types) + " |",
        "|---|" + "---:|" * len(types),
    ]
    for r in rows.values():
        cells = [
            f"{100 * r['per_type'][t]['mAP']:.1f} / {100 * r['per_type'][t]['rank1']:.1f}" for t in types
        ]
        lines.append(f"| {r['title']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_demo(
    out: Path, seed: int = 0, epochs: int | None = None, overwrite: bool = False
) -> dict[str, dict[str, Any]]:
    started = time.perf_counter()
    out = Path(out)
    _check_out(out, seed, overwrite)
    data_root = out / "synthocc"
    _make_data(data_root, seed, overwrite)

    runs: dict[str, Path] = {}
    cfgs: dict[str, Config] = {}
    seconds: dict[str, float] = {}
    for m in MODELS:
        cfg = demo_config(m, out, seed, epochs)
        print(f"\n=== training {m.title} ===")
        t0 = time.perf_counter()
        train(cfg, overwrite=overwrite)
        seconds[m.key] = time.perf_counter() - t0
        print(f"{m.title} trained in {seconds[m.key]:.0f} s")
        runs[m.key], cfgs[m.key] = out / m.key, cfg
    rows = report(out, seed, runs, cfgs, seconds)
    print(
        f"\nreport: {out / 'report.md'}; results: {out / 'results.json'}; "
        f"total {time.perf_counter() - started:.0f} s"
    )
    return rows


def demo_config(model: DemoModel, out: Path, seed: int, epochs: int | None = None) -> Config:
    """A demo model's config: its packaged file on the demo's SynthOcc at <out>/synthocc, seed and run folder."""
    overrides = [f"data.root={out / 'synthocc'}", f"train.seed={seed}", f"train.output_dir={out / model.key}"]
    if epochs is not None:
        overrides.append(f"train.epochs={epochs}")
    return load_config(model.config, overrides)


def _vit_pictures(
    runs: dict[str, Path],
    cfgs: dict[str, Config],
    deployed: dict[str, nn.Module],
    titles: dict[str, str],
    dataset,
    query_paths: list[str],
    out: Path,
) -> list[str]:
    """The ViT models' last-block class-token attention on the occluded queries, and the tokens OGFR's agent
    erases on holistic gallery images; report lines."""
    from occreid.engine.checkpoint import load_method
    from occreid.evaluation.token_maps import attention_maps, draw_erased_tokens

    vits = {titles[k]: v for k, v in deployed.items() if cfgs[k].model.backbone in VIT_ARCHS}
    if not vits:
        return []
    cfg = next(cfgs[k] for k in deployed if titles[k] in vits)
    attention_maps(vits, query_paths, out / "attention_maps.png", cfg)
    lines = [
        "## ViT attention on occluded queries (last block, class token over the patches)",
        "",
        "![attention maps](attention_maps.png)",
        "",
    ]
    for key in deployed:
        method, method_cfg = load_method(runs[key] / "last.pt", "cpu")
        if getattr(method, "agent", None) is None:
            continue
        holistic = [g.path for g in dataset.gallery if g.occluder_type == "none"][::97][: len(query_paths)]
        draw_erased_tokens(method, holistic, out / f"erased_tokens_{key}.png")
        lines += [
            f"## Tokens {titles[key]}'s agent erases in the holistic teacher (greedy, "
            f"rho = {method_cfg.ogfr.erase_ratio})",
            "",
            f"![erased tokens](erased_tokens_{key}.png)",
            "",
        ]
    return lines


def report(
    out: Path, seed: int, runs: dict[str, Path], cfgs: dict[str, Config], seconds: dict[str, float]
) -> dict[str, dict[str, Any]]:
    """Evaluate the trained MODELS (`runs`: key -> run folder with last.pt) on <out>/synthocc and write the
    table, `results.json` and `report.md`."""
    from occreid.data.datasets import load_dataset
    from occreid.evaluation import visualize_ranked_results
    from occreid.modeling.complexity import count_flops, count_parameters

    data_root = out / "synthocc"
    titles = {m.key: m.title for m in MODELS}
    dataset = load_dataset("synthocc", data_root)
    rows: dict[str, dict[str, Any]] = {}
    deployed: dict[str, nn.Module] = {}
    outputs: dict[str, EvalOutput] = {}
    for m in MODELS:
        name = m.key
        model, cfg = load_deployed_model(runs[name] / "last.pt")
        device = torch.device("cpu")
        qf = extract_features(model, dataset.query, cfg, device, desc="query")
        gf = extract_features(model, dataset.gallery, cfg, device, desc="gallery")
        output = evaluate_features(qf, gf, dataset.query, dataset.gallery, cfg)
        h, w = cfg.data.image_size
        r = output.result
        rows[name] = {
            "title": m.title,
            "config": m.config,
            "train_seconds": round(seconds[name], 1),
            "pretrained": cfg.model.pretrained,
            "rank1": float(r.cmc[0]),
            "rank5": float(r.cmc[4]),
            "rank10": float(r.cmc[9]),
            "mAP": float(r.mAP),
            "mINP": float(r.mINP),
            "params": count_parameters(model),
            "flops": count_flops(model, (1, 3, h, w)),
            "ms_per_query": _ms_per_query(model, cfg, [q.path for q in dataset.query], gf),
            "settings": output.settings,
            "seed": seed,
            "epochs": cfg.train.epochs,
            "backbone": cfg.model.backbone,
            "per_type": {
                t: {"rank1": float(x.cmc[0]), "mAP": float(x.mAP), "mINP": float(x.mINP)}
                for t, x in output.per_type.items()
            },
            "per_type_queries": {
                t: sum(q.occluder_type == t for q in dataset.query) for t in output.per_type
            },
        }
        if m.pose_features:
            rows[name]["pose_at_test"] = pose_at_test(runs[name] / "last.pt", dataset, m.pose_features)
        deployed[name], outputs[name] = model, output

    table, type_table = _table(rows), _type_table(rows)
    print("\n" + table + "\n\nmAP / Rank-1 (%) by occluder type of the query:\n" + type_table)
    (out / "results.json").write_text(json.dumps(rows, indent=2))

    # ---- report
    _curves(runs, titles, out / "curves.png")
    names = sorted({Path(q.path).name for q in dataset.query})[:: max(1, len(dataset.query) // 6)][:6]
    ranked = {}
    for name in runs:
        o = outputs[name]
        ranked[name] = visualize_ranked_results(
            o.distmat,
            o.query_paths,
            o.gallery_paths,
            np.array([q.pid for q in dataset.query]),
            np.array([g.pid for g in dataset.gallery]),
            np.array([q.camid for q in dataset.query]),
            np.array([g.camid for g in dataset.gallery]),
            out / f"ranked_{name}",
            topk=8,
            select=names,
        )
    first = cfgs[MODELS[0].key]
    query_paths = [str(data_root / "query" / n) for n in names]
    cnns = {k: v for k, v in deployed.items() if cfgs[k].model.backbone not in VIT_ARCHS}
    _response_maps(cnns, titles, first, query_paths, out / "response_maps.png")
    pictures = _vit_pictures(runs, cfgs, deployed, titles, dataset, query_paths, out)
    lines = [
        f"# occreid demo: {' vs '.join(titles.values())} on SynthOcc (occluded protocol)",
        "",
        f"Seed {seed}; {', '.join(sorted({c.model.backbone for c in cfgs.values()}))} "
        f"({'ImageNet-pretrained' if first.model.pretrained else 'from scratch'}) at {first.data.image_size[0]}x"
        f"{first.data.image_size[1]}, {first.train.epochs} epochs each, same schedule and seed. "
        "Every model evaluated with f_G only: the deployed models take images only, no pose.",
        "",
        f"{len(dataset.query)} occluded queries, {len(dataset.gallery)} gallery images; settings: "
        f"`{json.dumps(rows[MODELS[0].key]['settings'])}`",
        "",
        "Training wall time: " + ", ".join(f"{titles[k]} {v:.0f} s" for k, v in seconds.items()) + ".",
        "",
        table,
        "",
        "mAP / Rank-1 (%) by the query's occluder type (each type's queries against the whole gallery):",
        "",
        type_table,
        "",
        "## Training curves",
        "",
        "![curves](curves.png)",
        "",
        "## Feature-response maps of the CNNs (channel mean of F; cf. the paper's Figures 1 and 4)",
        "",
        "![response maps](response_maps.png)",
        "",
        *pictures,
        "## Ranked lists (green: same identity, red: different)",
        "",
    ]
    for name in runs:
        lines += [f"### {titles[name]}", ""] + [
            f"![{Path(p).stem}]({Path(p).relative_to(out)})" for p in ranked[name]
        ]
        lines.append("")
    (out / "report.md").write_text("\n".join(lines))
    return rows
