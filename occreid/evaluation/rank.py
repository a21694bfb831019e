"""CMC, mAP and mINP under the Market-1501 protocol, exact and compile-free.

Protocol (the one torchreid's `eval_market1501` implements):

1. Rank the gallery by ascending distance to the query. Ties break by gallery index (a *stable* sort): of two
   gallery items at the same distance, the one listed first in the gallery comes first.
2. Remove the gallery items with the query's pid AND the query's camera (the same person seen by the same
   camera is not a re-identification). Items of other pids are never removed; distractor / junk pids (0, -1)
   are the dataset's business, not the evaluator's.
3. A query with no remaining positive (same pid, other camera) is skipped and counted in
   `num_skipped_queries`; it contributes to no metric.
4. For the n positives of a valid query at 1-based ranks r_1 < ... < r_n in the filtered list:
       CMC(k) = 1 if r_1 <= k                                          (the match is found within the top k)
       AP     = (1 / n) * sum_j  j / r_j                               (precision at each positive)
       INP    = n / r_n                                                (Ye et al., TPAMI 2021, Eq. 5)
   and the reported numbers are their means over valid queries.

How it is fast without an argsort: the metrics only need the ranks of the positives. For a chunk of queries we
sort the distance VALUES of each row (a SIMD sort, several times faster than argsort) and look each positive
up with a batched `searchsorted`: rank(p) = #{x < p} + 1, minus the same-camera items closer than p (a sparse
count). A positive whose distance is tied by another gallery item needs the gallery-index rule; such rows
(rare with real features) fall back to a stable argsort of the row, so the numbers always equal the reference
per-query loop with a stable argsort. Same-pid pairs are found by grouping the gallery by pid, never by a
dense Q x G comparison. Memory is O(chunk x gallery); a CUDA distance matrix is processed on the GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from occreid.errors import OccreidError


@dataclass
class EvalResult:
    """Retrieval metrics; fractions in [0, 1] (multiply by 100 for the usual percentages)."""

    cmc: np.ndarray  # (max_rank,) float64: CMC[k-1] = fraction of valid queries matched within the top k
    mAP: float
    mINP: float
    AP: np.ndarray  # (num_query,) float64, NaN for skipped queries
    INP: np.ndarray  # (num_query,) float64, NaN for skipped queries
    num_valid_queries: int
    num_skipped_queries: int
    max_rank: int
    num_gallery: int = 0
    # (num_query,) int64: rank of each query's first true match (1: a Rank-1 hit), 0 for skipped queries
    first_rank: np.ndarray | None = None

    @property
    def valid(self) -> np.ndarray:
        """(num_query,) bool: queries that had at least one positive."""
        return ~np.isnan(self.AP)

    def per_query(self) -> dict[str, list]:
        """Per-query AP, Rank-1 hit (0/1) and INP, in query order; null for skipped queries (no positive).
        Their means over the valid queries are mAP, Rank-1 and mINP."""
        valid = self.valid
        first = self.first_rank if self.first_rank is not None else np.zeros(len(valid), dtype=np.int64)
        return {
            "AP": [float(a) if v else None for a, v in zip(self.AP, valid, strict=True)],
            "rank1": [int(r == 1) if v else None for r, v in zip(first, valid, strict=True)],
            "INP": [float(a) if v else None for a, v in zip(self.INP, valid, strict=True)],
        }

    def rank(self, k: int) -> float:
        """CMC at rank k (1-based), a fraction."""
        if not 1 <= k <= self.max_rank:
            raise OccreidError(f"rank {k} is outside 1..max_rank={self.max_rank}; raise eval.max_rank")
        return float(self.cmc[k - 1])


def _as_numpy_1d(values: Any, name: str, length: int) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    array = np.asarray(values).reshape(-1)
    if array.shape[0] != length:
        raise OccreidError(f"{name} has {array.shape[0]} entries but the distance matrix needs {length}")
    return array.astype(np.int64)


def _same_pid_pairs(q_pids: np.ndarray, g_pids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All (query, gallery) pairs with equal pid, without a dense Q x G comparison.

    Returns rows (M,) and cols (M,), sorted by row then gallery index.
    """
    g_order = np.argsort(g_pids, kind="stable")
    sorted_pids = g_pids[g_order]
    start = np.searchsorted(sorted_pids, q_pids, side="left")
    stop = np.searchsorted(sorted_pids, q_pids, side="right")
    counts = stop - start
    total = int(counts.sum())
    rows = np.repeat(np.arange(len(q_pids)), counts)
    offsets = np.cumsum(counts) - counts  # first pair of each query in the flat list
    within = np.arange(total) - np.repeat(offsets, counts)
    cols = g_order[np.repeat(start, counts) + within]
    return rows, cols


def evaluate_rank(
    distmat: Any,
    q_pids: Any,
    g_pids: Any,
    q_camids: Any,
    g_camids: Any,
    max_rank: int = 50,
    chunk_size: int = 256,
) -> EvalResult:
    """CMC, mAP and mINP of a query x gallery distance matrix under the Market-1501 protocol
    (module docstring).

    Ties: gallery items at exactly the same distance are ranked by gallery index, the lower index first (a
    stable sort), so the numbers are deterministic. The classic loop (torchreid's `eval_market1501`) uses
    numpy's default, unstable argsort; on inputs with exact ties its numbers can differ from ours.

    Args:
        distmat: (Q, G) distances, smaller is closer; numpy array or torch tensor (CPU or GPU; stays there).
        q_pids, q_camids: (Q,) integer person ids and camera ids of the queries.
        g_pids, g_camids: (G,) the same for the gallery.
        max_rank: length of the returned CMC curve. Ranks beyond the gallery size read 1.0 (every valid query
            has found its first match by then).
        chunk_size: queries processed at once; peak extra memory is about 12 * chunk_size * G bytes.

    Returns:
        EvalResult with cmc (max_rank,), mAP, mINP, per-query AP and INP, valid / skipped query counts.

    Raises:
        OccreidError: shapes disagree, the matrix holds NaN, or no query has a positive in the gallery.
    """
    import torch

    dist = distmat if isinstance(distmat, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(distmat))
    if dist.ndim != 2:
        raise OccreidError(
            f"distmat must be a (num_query, num_gallery) matrix, got shape {tuple(dist.shape)}"
        )
    if not dist.is_floating_point():
        dist = dist.double()
    if max_rank < 1:
        raise OccreidError(f"max_rank must be >= 1, got {max_rank}")
    num_q, num_g = dist.shape
    q_pids = _as_numpy_1d(q_pids, "q_pids", num_q)
    q_camids = _as_numpy_1d(q_camids, "q_camids", num_q)
    g_pids = _as_numpy_1d(g_pids, "g_pids", num_g)
    g_camids = _as_numpy_1d(g_camids, "g_camids", num_g)
    # Same-pid pairs split into removed (same camera) and positives (other camera), sparse.
    rows, cols = _same_pid_pairs(q_pids, g_pids)
    removed = g_camids[cols] == q_camids[rows]
    pos_rows, pos_cols = rows[~removed], cols[~removed]
    rm_rows, rm_cols = rows[removed], cols[removed]
    num_pos = np.bincount(pos_rows, minlength=num_q)
    pos_start = np.cumsum(num_pos) - num_pos
    rm_count = np.bincount(rm_rows, minlength=num_q)
    rm_start = np.cumsum(rm_count) - rm_count

    AP = np.full(num_q, np.nan)
    INP = np.full(num_q, np.nan)
    first_rank = np.zeros(num_q, dtype=np.int64)

    if dist.device.type == "cpu":
        dist_np = dist.detach().numpy()
        sort_buffer = np.empty((min(chunk_size, num_q), num_g), dtype=dist_np.dtype)
    for s in range(0, num_q, chunk_size):
        e = min(s + chunk_size, num_q)
        n = num_pos[s:e]
        if n.max(initial=0) == 0:
            continue
        pos = pos_cols[pos_start[s] : pos_start[s] + int(n.sum())]
        rm_lo, rm_hi = rm_start[s], rm_start[e - 1] + rm_count[e - 1]
        args = (n, pos, rm_rows[rm_lo:rm_hi] - s, rm_cols[rm_lo:rm_hi])
        if dist.device.type == "cpu":
            ranks = _positive_ranks_numpy(dist_np[s:e], *args, sort_buffer=sort_buffer)
        else:
            ranks = _positive_ranks(dist[s:e], *args)
        for i in np.flatnonzero(np.isnan(ranks[:, 0]) & (n > 0)):  # rows with exact ties: slow exact path
            q = s + i
            rm = rm_cols[rm_start[q] : rm_start[q] + rm_count[q]]
            ranks[i, : n[i]] = _stable_row_ranks(dist[q], pos_cols[pos_start[q] : pos_start[q] + n[i]], rm)
        has = n > 0
        k = np.arange(1, ranks.shape[1] + 1)[None, :]
        inside = k <= n[:, None]
        precision = np.divide(k, ranks, out=np.zeros_like(ranks), where=inside)  # j / r_j for j <= n
        last = ranks[np.arange(e - s), np.maximum(n - 1, 0)]
        AP[s:e][has] = precision.sum(axis=1)[has] / n[has]
        INP[s:e][has] = n[has] / last[has]
        first_rank[s:e][has] = ranks[has, 0].astype(np.int64)

    valid = num_pos > 0
    num_valid = int(valid.sum())
    if num_valid == 0:
        raise OccreidError(
            "no query has a positive in the gallery (same pid, other camera); check pids / camids of query "
            "and gallery"
        )
    hits = np.bincount(np.minimum(first_rank[valid], max_rank + 1), minlength=max_rank + 2)
    cmc = np.cumsum(hits)[1 : max_rank + 1] / num_valid
    return EvalResult(
        cmc=cmc.astype(np.float64),
        mAP=float(np.nanmean(AP)),
        mINP=float(np.nanmean(INP)),
        AP=AP,
        INP=INP,
        num_valid_queries=num_valid,
        num_skipped_queries=num_q - num_valid,
        max_rank=max_rank,
        num_gallery=num_g,
        first_rank=first_rank,
    )


def _positive_ranks_numpy(
    chunk: np.ndarray,
    n: np.ndarray,
    pos: np.ndarray,
    rm_rows: np.ndarray,
    rm_cols: np.ndarray,
    sort_buffer: np.ndarray,
) -> np.ndarray:
    """CPU version of `_positive_ranks` (same arguments and result), in numpy.

    numpy's SIMD sort of the values is ~15x faster than torch.sort on the CPU, and single-threaded numpy
    avoids the thread-pool hand-offs that make many small torch ops slow on a busy machine. The sorted rows go
    to a reused buffer (no page faults per chunk); the per-row searchsorted calls are cheap (n_i lookups
    each).
    """
    C = chunk.shape[0]
    srt = sort_buffer[:C]
    np.copyto(srt, chunk)
    srt.sort(axis=1)
    pos_values = chunk[np.repeat(np.arange(C), n), pos]
    if np.isnan(pos_values).any():
        raise OccreidError("distmat holds NaN at a query's positive gallery item; check the features")
    rm_values = chunk[rm_rows, rm_cols]
    pos_bounds = np.concatenate([[0], np.cumsum(n)])
    rm_bounds = np.searchsorted(rm_rows, np.arange(C + 1))
    ranks = np.full((C, int(n.max())), np.nan)
    for i in np.flatnonzero(n):
        p = np.sort(pos_values[pos_bounds[i] : pos_bounds[i + 1]])
        ahead = srt[i].searchsorted(p, side="left")  # #{x < p_k}
        if (srt[i].searchsorted(p, side="right") - ahead > 1).any():
            continue  # a positive's distance is tied: left NaN for the stable-argsort path
        if rm_bounds[i + 1] > rm_bounds[i]:  # same-camera items of the query's pid ahead of p_k are removed
            ahead -= (rm_values[rm_bounds[i] : rm_bounds[i + 1]][None, :] < p[:, None]).sum(axis=1)
        ranks[i, : n[i]] = ahead + 1
    return ranks


def _positive_ranks(
    chunk, n: np.ndarray, pos: np.ndarray, rm_rows: np.ndarray, rm_cols: np.ndarray
) -> np.ndarray:
    """1-based ranks, in the stable order with same-camera items removed, of each query's positives.

    chunk: (C, G) distances. n: (C,) positives per row; pos: (sum n,) their gallery indices grouped by row;
    rm_rows, rm_cols: the removed same-camera items (rows local to the chunk). Returns (C, max n) float64 with
    ascending ranks in the first n_i columns; a row where a positive's distance is tied by another item is all
    NaN (the caller resolves it with a stable argsort).
    """
    import torch

    device = chunk.device
    C = chunk.shape[0]
    pmax = int(n.max())
    n_t = torch.from_numpy(n).to(device)
    pr = torch.repeat_interleave(torch.arange(C, device=device), n_t)
    slot = torch.arange(len(pr), device=device) - torch.repeat_interleave(torch.cumsum(n_t, 0) - n_t, n_t)
    table = torch.full((C, pmax), float("inf"), dtype=chunk.dtype, device=device)
    table[pr, slot] = chunk[pr, torch.from_numpy(pos).to(device)]
    if torch.isnan(table).any():
        raise OccreidError("distmat holds NaN at a query's positive gallery item; check the features")
    table, _ = torch.sort(table, dim=1)

    sorted_rows = torch.sort(chunk, dim=1).values  # sorting the values (not argsort) is the fast part
    ahead = torch.searchsorted(sorted_rows, table, right=False)  # (C, pmax): #{x < p_k}
    equal = torch.searchsorted(sorted_rows, table, right=True) - ahead  # #{x == p_k}, 1 unless tied
    if len(rm_rows):  # same-camera items of the query's pid are not in the ranking: take them out again
        rr = torch.from_numpy(rm_rows).to(device)
        rx = chunk[rr, torch.from_numpy(rm_cols).to(device)].unsqueeze(1)
        ahead = ahead - torch.zeros_like(ahead).index_add_(0, rr, (rx < table[rr]).long())

    inside = torch.arange(pmax, device=device)[None, :] < n_t[:, None]
    tied = ((equal > 1) & inside).any(dim=1)
    ranks = (ahead + 1).double()
    ranks[tied] = float("nan")
    return ranks.cpu().numpy()


def _stable_row_ranks(row, pos: np.ndarray, rm: np.ndarray) -> np.ndarray:
    """Slow exact path for a query whose distances tie a positive: a stable argsort of its (G,) row."""
    values = row.cpu().numpy()
    order = np.argsort(values, kind="stable")
    keep = np.ones(len(values), dtype=bool)
    keep[rm] = False
    positive = np.zeros(len(values), dtype=bool)
    positive[pos] = True
    kept_order = order[keep[order]]
    return (np.flatnonzero(positive[kept_order]) + 1).astype(np.float64)
