"""Metrics per occluder type: each type's queries ranked against the whole gallery.

Where a dataset knows what occludes each query (`ImageRecord.occluder_type`; SynthOcc records it), Rank-k, mAP
and mINP are reported per type as well as overall. A type's numbers are those of `evaluate_rank` on the rows
of the distance matrix whose query has that type: the gallery is the whole gallery, the protocol is the same,
so the overall mAP is the query-weighted mean of the per-type mAPs (over valid queries). Queries of unknown
type (None) are in no group.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from occreid.evaluation.rank import EvalResult, evaluate_rank

PROTOCOL = (
    "each occluder type's queries against the whole gallery (the same distances as the overall numbers)"
)


def evaluate_by_type(
    distmat: Any,
    q_pids: Any,
    g_pids: Any,
    q_camids: Any,
    g_camids: Any,
    q_types: Sequence[str | None],
    max_rank: int = 50,
) -> dict[str, EvalResult]:
    """type -> EvalResult of that type's queries: distmat (Q, G) numpy, q_* (Q,), g_* (G,), q_types (Q,).

    Types come in sorted order, "none" (unoccluded queries) last. A type none of whose queries has a positive
    in the gallery is left out (it has no metric).
    """
    types = np.array([t if t is not None else "" for t in q_types], dtype=object)
    if len(types) != len(distmat):
        raise ValueError(f"{len(types)} query types for {len(distmat)} queries")
    names = sorted({t for t in q_types if t is not None}, key=lambda t: (t == "none", t))
    q_pids, q_camids = np.asarray(q_pids).reshape(-1), np.asarray(q_camids).reshape(-1)
    cameras: dict[int, set[int]] = {}  # pid -> the gallery cameras that saw it
    for pid, cam in zip(np.asarray(g_pids).reshape(-1).tolist(), np.asarray(g_camids).reshape(-1).tolist()):
        cameras.setdefault(pid, set()).add(cam)
    valid = np.array([bool(cameras.get(p, set()) - {c}) for p, c in zip(q_pids.tolist(), q_camids.tolist())])
    out = {}
    for name in names:
        rows = np.flatnonzero(types == name)
        if valid[rows].any():
            out[name] = evaluate_rank(distmat[rows], q_pids[rows], g_pids, q_camids[rows], g_camids, max_rank)
    return out
