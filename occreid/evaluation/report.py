"""Evaluation numbers as a text table and as JSON that records every setting that produced them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from occreid.evaluation.rank import EvalResult

# Settings a result is meaningless without; results_to_json fills missing ones with None so gaps are visible.
SETTING_KEYS = ("feature", "normalize", "metric", "rerank", "k1", "k2", "lambda_value", "flip", "max_rank")


def format_results_table(
    results: Mapping[str, EvalResult] | EvalResult, ranks: Sequence[int] = (1, 5, 10)
) -> str:
    """A markdown table: one row per result, columns Rank-k for k in `ranks`, mAP and mINP in percent.

    Use ranks=(1, 3) for the partial datasets (Partial-REID, Partial-iLIDS).
    """
    if isinstance(results, EvalResult):
        results = {"result": results}
    header = ["name", *[f"Rank-{k}" for k in ranks], "mAP", "mINP", "queries (skipped)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    for name, r in results.items():
        cells = [
            name,
            *[f"{100 * r.rank(k):.1f}" for k in ranks],
            f"{100 * r.mAP:.1f}",
            f"{100 * r.mINP:.1f}",
        ]
        cells.append(f"{r.num_valid_queries} ({r.num_skipped_queries})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def results_to_json(result: EvalResult, settings: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON-ready dict: metrics (fractions), the CMC curve, query/gallery counts and the exact settings.

    `settings` should hold feature, normalize, metric, rerank, k1, k2, lambda_value, flip (missing keys are
    written as null); any other keys (dataset, checkpoint, ...) are copied too.
    """
    merged = {key: settings.get(key) for key in SETTING_KEYS}
    merged.update({k: v for k, v in settings.items() if k not in merged})
    merged["max_rank"] = result.max_rank
    return {
        "metrics": {
            **{f"rank{k}": float(result.cmc[k - 1]) for k in (1, 3, 5, 10, 20) if k <= result.max_rank},
            "mAP": result.mAP,
            "mINP": result.mINP,
        },
        "cmc": [float(x) for x in result.cmc],
        "num_query": len(result.AP),
        "num_gallery": int(result.num_gallery),
        "num_valid_queries": result.num_valid_queries,
        "num_skipped_queries": result.num_skipped_queries,
        "settings": merged,
    }
