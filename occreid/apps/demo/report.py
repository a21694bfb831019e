"""The demo's report: the results table and the table by occluder type, training curves, the CNNs' response
maps, the ViTs' attention maps, the tokens OGFR's agent erases and ranked lists, in `report.md`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from occreid.config import Config
from occreid.evaluation.evaluate import EvalOutput
from occreid.modeling.vit import VIT_ARCHS


def _curves(runs: dict[str, Path], titles: dict[str, str], out: Path) -> None:
    """Each model's total training loss per logged step (the demo evaluates once, at the end: see the
    table)."""
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
    """Channel-mean activation of F over each image (the paper's Figures 1 and 4), per CNN model (a ViT's
    tokens are layer-normalised, so their channel mean says nothing; its attention maps are drawn instead)."""
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


def _table(rows: dict[str, dict[str, Any]]) -> str:
    """One line per model (f_G, deployed), then each model's pose-at-test features."""
    header = "| model | test feature | Rank-1 | Rank-5 | mAP | mINP | params (M) | GFLOPs | ms / query |"
    lines = [header, "|" + "---|" * 9]
    for r in rows.values():
        lines.append(
            f"| {r['title']} | f_G | {100 * r['rank1']:.1f} | {100 * r['rank5']:.1f} | {100 * r['mAP']:.1f} "
            f"| {100 * r['mINP']:.1f} | {r['params'] / 1e6:.2f} | {r['flops'] / 1e9:.3f} | "
            f"{r['ms_per_query']:.1f} |"
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
    from occreid.evaluation.token_maps import attention_maps, draw_erased_tokens
    from occreid.inference.models import load_method

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


def write_report(
    out: Path,
    seed: int,
    rows: dict[str, dict[str, Any]],
    runs: dict[str, Path],
    cfgs: dict[str, Config],
    deployed: dict[str, nn.Module],
    outputs: dict[str, EvalOutput],
    seconds: dict[str, float],
) -> None:
    """The table (printed), `results.json` and `report.md` with its pictures."""
    from occreid.data.datasets import load_dataset
    from occreid.evaluation import visualize_ranked_results

    data_root = out / "synthocc"
    dataset = load_dataset("synthocc", data_root)
    titles = {key: row["title"] for key, row in rows.items()}
    first_key = next(iter(rows))
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
    first = cfgs[first_key]
    query_paths = [str(data_root / "query" / n) for n in names]
    cnns = {k: v for k, v in deployed.items() if cfgs[k].model.backbone not in VIT_ARCHS}
    _response_maps(cnns, titles, first, query_paths, out / "response_maps.png")
    pictures = _vit_pictures(runs, cfgs, deployed, titles, dataset, query_paths, out)
    lines = [
        f"# occreid demo: {' vs '.join(titles.values())} on SynthOcc (occluded protocol)",
        "",
        f"Seed {seed}; {', '.join(sorted({c.model.backbone for c in cfgs.values()}))} "
        f"({'ImageNet-pretrained' if first.model.pretrained else 'from scratch'}) at "
        f"{first.data.image_size[0]}x{first.data.image_size[1]}, {first.train.epochs} epochs each, same "
        "schedule and seed. Every model evaluated with f_G only: the deployed models take images only, no "
        "pose.",
        "",
        f"{len(dataset.query)} occluded queries, {len(dataset.gallery)} gallery images; settings: "
        f"`{json.dumps(rows[first_key]['settings'])}`",
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
