"""The demo's report: the results table and the table by occluder type, then each model's run report
(`occreid report`: training curves, ranked lists, the CNNs' response maps, the ViTs' attention maps, the
tokens OGFR's agent erases), in `report.md`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from occreid.config import Config
from occreid.evaluation.evaluate import EvalOutput


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


def write_report(
    out: Path,
    seed: int,
    rows: dict[str, dict[str, Any]],
    runs: dict[str, Path],
    cfgs: dict[str, Config],
    methods: dict[str, nn.Module],
    outputs: dict[str, EvalOutput],
    seconds: dict[str, float],
) -> None:
    """The table (printed), `results.json`, each model's run report (`occreid report`, from the evaluation
    just made) and `report.md`: the comparison tables, then each model's report pictures."""
    from occreid.reports import REPORT_DIR, write_run_report
    from occreid.reports.pictures import loss_curves, read_metrics
    from occreid.reports.run_report import Evaluated

    titles = {key: row["title"] for key, row in rows.items()}
    first_key = next(iter(rows))
    table, type_table = _table(rows), _type_table(rows)
    print("\n" + table + "\n\nmAP / Rank-1 (%) by occluder type of the query:\n" + type_table)
    (out / "results.json").write_text(json.dumps(rows, indent=2))
    for key in runs:  # this demo has just trained and evaluated them: their reports are replaced
        evaluated = Evaluated(methods[key], cfgs[key], outputs[key])
        write_run_report(runs[key], overwrite=True, evaluated=evaluated, title=titles[key])
    loss_curves({titles[k]: read_metrics(r / "metrics.jsonl") for k, r in runs.items()}, out / "curves.png")
    first = cfgs[first_key]
    lines = [
        f"# occreid demo: {' vs '.join(titles.values())} on SynthOcc (occluded protocol)",
        "",
        f"Seed {seed}; {', '.join(sorted({c.model.backbone for c in cfgs.values()}))} "
        f"({'ImageNet-pretrained' if first.model.pretrained else 'from scratch'}) at "
        f"{first.data.image_size[0]}x{first.data.image_size[1]}, {first.train.epochs} epochs each, same "
        "schedule and seed. Every model evaluated with f_G only: the deployed models take images only, no "
        "pose.",
        "",
        f"{rows[first_key]['settings']['num_query']} occluded queries, "
        f"{rows[first_key]['settings']['num_gallery']} gallery images; settings: "
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
        "## Training loss of every model",
        "",
        "![curves](curves.png)",
        "",
    ]
    for key in runs:
        lines += _model_section(out, runs[key] / REPORT_DIR, titles[key])
    (out / "report.md").write_text("\n".join(lines))


def _model_section(out: Path, report_dir: Path, title: str) -> list[str]:
    """A model's run report, linked, with its pictures (paths relative to the demo folder)."""
    where = report_dir.relative_to(out).as_posix()
    lines = [f"## {title}", "", f"Its report: [{where}/report.md]({where}/report.md)", ""]
    for picture in ("curves.png", "response_maps.png", "attention_maps.png", "erased_tokens.png"):
        if (report_dir / picture).is_file():
            lines += [f"![{title} {Path(picture).stem}]({where}/{picture})", ""]
    for picture in ("ranked_worst.png",):
        lines += [f"Worst queries by AP: ![{title} ranked]({where}/{picture})", ""]
    return lines
