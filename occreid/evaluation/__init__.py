"""Evaluation and retrieval: exact CMC / mAP / mINP, memory-bounded k-reciprocal re-ranking, distances,
evaluation of a model on a query/gallery split, ranked-list pictures and a searchable gallery index.

Importing this package imports numpy only; torch, PIL and faiss are imported inside the functions that use
them.
"""

from occreid.evaluation.distance import compute_distance
from occreid.evaluation.index import GalleryIndex
from occreid.evaluation.rank import EvalResult, evaluate_rank
from occreid.evaluation.report import format_results_table, results_to_json
from occreid.evaluation.rerank import re_ranking, re_ranking_features
from occreid.evaluation.visualize import ranked_results_grid, visualize_ranked_results

__all__ = [
    "EvalResult",
    "GalleryIndex",
    "compute_distance",
    "evaluate_rank",
    "format_results_table",
    "ranked_results_grid",
    "re_ranking",
    "re_ranking_features",
    "results_to_json",
    "visualize_ranked_results",
]
