"""Evaluation numbers as a text table and as JSON that records every setting that produced them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from occreid.errors import OccreidError
from occreid.evaluation.rank import EvalResult

# The settings a result is meaningless without. results_to_json writes them in this one schema:
#   feature, normalize, metric ("euclidean" | "cosine"), flip, max_rank,
#   rerank: {"enabled": bool, "k1": int, "k2": int, "lambda_value": float}
SETTING_KEYS = ("feature", "normalize", "metric", "flip", "rerank", "max_rank")
RERANK_KEYS = ("enabled", "k1", "k2", "lambda_value")


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


def normalise_settings(settings: Mapping[str, Any], max_rank: int | None = None) -> dict[str, Any]:
    """`settings` in the schema of SETTING_KEYS, or OccreidError naming what is missing.

    `rerank` may be the nested dict or a bool with flat `k1`, `k2`, `lambda_value` keys (folded into the
    dict). `max_rank`, when given, is the value the numbers were computed with and wins over
    settings["max_rank"]. Keys outside the schema (dataset, checkpoint, image_size, ...) are kept as they are.
    """
    merged = dict(settings)
    if max_rank is not None:
        merged["max_rank"] = int(max_rank)
    rerank = merged.get("rerank")
    if isinstance(rerank, bool):
        rerank = {"enabled": rerank, **{k: merged.pop(k) for k in RERANK_KEYS[1:] if k in merged}}
    missing = [key for key in SETTING_KEYS if merged.get(key) is None]
    if isinstance(rerank, Mapping):
        rerank = dict(rerank)
        missing += [f"rerank.{key}" for key in RERANK_KEYS if rerank.get(key) is None]
        merged["rerank"] = rerank
    elif "rerank" not in missing:
        missing.append("rerank")
    if missing:
        raise OccreidError(
            f"evaluation settings lack {', '.join(missing)}; a result is written only with every setting "
            f"behind it ({', '.join(SETTING_KEYS)}; rerank = {{{', '.join(RERANK_KEYS)}}})"
        )
    return merged


def results_to_json(
    result: EvalResult, settings: Mapping[str, Any], per_type: Mapping[str, EvalResult] | None = None
) -> dict[str, Any]:
    """A JSON-ready dict: metrics (fractions), the CMC curve, query/gallery counts and the exact settings.

    `settings` must hold feature, normalize, metric, flip and rerank (a dict with enabled, k1, k2,
    lambda_value, or a bool with flat k1, k2, lambda_value keys); see `normalise_settings`. max_rank is taken
    from `result`. Other keys (dataset, checkpoint, ...) are copied too. `per_type` (occluder type -> result
    of that type's queries against the whole gallery, occreid.evaluation.by_type) adds "per_occluder_type":
    type -> {metrics, num_query, num_valid_queries, num_skipped_queries}.

    Raises:
        OccreidError: a setting is missing or None.
    """
    out = {
        "metrics": _metrics(result),
        "cmc": [float(x) for x in result.cmc],
        "num_query": len(result.AP),
        "num_gallery": int(result.num_gallery),
        "num_valid_queries": result.num_valid_queries,
        "num_skipped_queries": result.num_skipped_queries,
        "settings": normalise_settings(settings, result.max_rank),
    }
    if per_type:
        out["per_occluder_type"] = {
            name: {
                "metrics": _metrics(r),
                "num_query": len(r.AP),
                "num_valid_queries": r.num_valid_queries,
                "num_skipped_queries": r.num_skipped_queries,
            }
            for name, r in per_type.items()
        }
    return out


def _metrics(result: EvalResult) -> dict[str, float]:
    return {
        **{f"rank{k}": float(result.cmc[k - 1]) for k in (1, 3, 5, 10, 20) if k <= result.max_rank},
        "mAP": result.mAP,
        "mINP": result.mINP,
    }
