"""k-reciprocal re-ranking (Zhong et al., CVPR 2017) with memory that grows with (Q + G) x k1, not (Q + G)^2.

Same semantics and values as the widely used reference `re_ranking(q_g_dist, q_q_dist, g_g_dist)` (the
Houjing Huang / torchreid version of zhunzhong07/person-re-ranking). With N = Q + G and the joint matrix
M = [[q_q, q_g], [q_g^T, g_g]]:

    d(i, j) = M[j, i]^2 / max_r M[r, i]^2           squared, normalised by each column's max, transposed
    R(i, k) = the k + 1 nearest of i under d (i itself included)
    K(i)    = {j in R(i, k1) : i in R(j, k1)}       k-reciprocal set (Eq. 6 of the paper)
    K*(i)   = K(i) united with K(j, round(k1/2)) for every j in K(i) whose half-size set overlaps K(i) in
              more than 2/3 of its elements        (Eq. 9)
    V(i, j) = exp(-d(i, j)) / sum_{j' in K*(i)} exp(-d(i, j'))  for j in K*(i), else 0      (Eq. 10)
    V(i)   <- mean of V(j) over the k2 nearest j of i            (local query expansion, skipped if k2 == 1)
    d_J(i, j) = 1 - m / (2 - m),  m = sum_l min(V(i, l), V(j, l))                          (Eq. 11)
    final   = (1 - lambda) * d_J + lambda * d,  sliced to query x gallery

How memory stays bounded: one pass over blocks of columns of M (rows of d), read as views of the inputs,
computes each column's max and its k1 + 1 nearest (dividing by its own max does not change the order, nor
does squaring non-negative numbers, so only the chosen entries are squared) and keeps only the query x
gallery block of d. The nearest are not a full top-k: the k-th smallest of the minima of k row groups bounds
the k-th smallest entry, and only the few entries under that bound are sorted (`_smallest_k`). The
k-reciprocal sets are index arithmetic on the (N, k1 + 1) neighbour table, V is a sparse list of (row, column,
value) triples with about N x 2 k1 entries, query expansion merges sparse rows, and the Jaccard term only
visits gallery rows that share a column with the query. Only the (Q, G) output is dense. The column blocks,
the set blocks and the Jaccard chunks run on torch's thread count (their numpy passes release the GIL).
Ties in the neighbour order may break differently from the reference's unstable argsort; with continuous
features there are none.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from occreid.errors import OccreidError

NAN_INPUT = "re-ranking input holds NaN; check the features/distances"


def _check_params(k1: int, k2: int, lambda_value: float) -> None:
    if k1 < 1:
        raise OccreidError(f"re-ranking k1 must be >= 1, got {k1}")
    if k2 < 1:
        raise OccreidError(f"re-ranking k2 must be >= 1, got {k2}")
    if not 0.0 <= lambda_value <= 1.0:
        raise OccreidError(f"re-ranking lambda_value must be in [0, 1], got {lambda_value}")


def _numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _workers() -> int:
    """Threads for the block loops: torch's thread count (OMP_NUM_THREADS), as for every other CPU op. The
    numpy passes in the blocks release the GIL."""
    import torch

    return max(1, torch.get_num_threads())


def _map(fn, items: list, workers: int) -> list:
    if workers <= 1 or len(items) <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(min(workers, len(items)), thread_name_prefix="occreid-rerank") as pool:
        futures = [pool.submit(fn, item) for item in items]
        try:
            return [future.result() for future in futures]
        except BaseException:
            for future in futures:  # an error (NaN input) stops the blocks still waiting
                future.cancel()
            raise


def _blocks(N: int, Q: int, size: int) -> list[tuple[int, int]]:
    """Index ranges of at most `size` in the joint matrix, none straddling the query/gallery boundary Q."""
    return [(s, min(s + size, b)) for a, b in ((0, Q), (Q, N)) for s in range(a, b, size)]


class _MatrixSource:
    """Columns of the joint matrix M, read as views of the three given distance matrices."""

    def __init__(self, q_g: Any, q_q: Any, g_g: Any) -> None:
        self.q_g, self.q_q, self.g_g = _numpy(q_g), _numpy(q_q), _numpy(g_g)
        self.Q, self.G = self.q_g.shape
        if self.q_q.shape != (self.Q, self.Q) or self.g_g.shape != (self.G, self.G):
            raise OccreidError(
                f"re-ranking needs q_g (Q, G), q_q (Q, Q), g_g (G, G); got {self.q_g.shape}, "
                f"{self.q_q.shape}, {self.g_g.shape}"
            )
        self.N = self.Q + self.G
        self.dtype = np.result_type(self.q_q.dtype, self.q_g.dtype, self.g_g.dtype)
        self.workers = _workers()

    def nearest(self, s: int, e: int, k: int, q_g: np.ndarray):
        """Column block s..e-1 of M (row i of the reference's transposed matrix is column i of M), read as
        two views without copies: the query rows and the gallery rows. See `_column_nearest`; for query
        columns, q_g (e - s, G) receives the squared query x gallery rows."""
        Q = self.Q
        if e <= Q:
            parts = [(self.q_q[:, s:e], 0), (self.q_g[s:e].T, Q)]
        else:
            parts = [(self.q_g[:, s - Q : e - Q], 0), (self.g_g[:, s - Q : e - Q], Q)]
        parts = [(p, first) for p, first in parts if len(p)]  # no queries, or no gallery
        if e <= Q:  # squared in the joint matrix's dtype, then cast, as the reference does
            np.square(self.q_g[s:e], out=q_g, dtype=self.dtype)
        return _column_nearest(parts, k, self.N, self.dtype)

    def pairs(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """Squared joint-matrix entries M[j, i]^2 as float32, for index arrays i, j."""
        Q = self.Q
        out = np.empty(len(i), dtype=self.dtype)
        for iq in (True, False):
            for jq in (True, False):
                sel = ((i < Q) == iq) & ((j < Q) == jq)
                ii, jj = i[sel], j[sel]
                if iq and jq:
                    out[sel] = self.q_q[jj, ii]
                elif iq:
                    out[sel] = self.q_g[ii, jj - Q]
                elif jq:
                    out[sel] = self.q_g[jj, ii - Q]
                else:
                    out[sel] = self.g_g[jj - Q, ii - Q]
        return np.power(out, 2).astype(np.float32)


class _FeatureSource:
    """Rows of the distance matrix of the stacked query and gallery features, computed on the fly. The matrix
    is symmetric, so its rows are the columns the reference reads."""

    workers = 1  # the GEMM is already multi-threaded by torch

    def __init__(self, qf: Any, gf: Any, metric: str, normalize: bool) -> None:
        import torch

        from occreid.evaluation.distance import _to_tensor

        if metric not in ("euclidean", "cosine"):
            raise OccreidError(f"unknown distance metric {metric!r}; use 'euclidean' or 'cosine'")
        q, g = _to_tensor(qf, "query features").float(), _to_tensor(gf, "gallery features").float()
        if q.shape[1] != g.shape[1]:
            raise OccreidError(f"query features are {q.shape[1]}-d but gallery features are {g.shape[1]}-d")
        f = torch.cat([q, g.to(q.device)], dim=0)
        if normalize or metric == "cosine":
            f = torch.nn.functional.normalize(f, dim=1)
        self.f, self.metric = f, metric
        self.sq = f.pow(2).sum(dim=1)
        self.Q, self.G, self.N = q.shape[0], g.shape[0], f.shape[0]

    def _dist(self, a, b_sq, a_sq):
        """Distances from dot products `a` and squared norms (broadcastable to `a`)."""
        if self.metric == "euclidean":
            return (a_sq + b_sq - 2.0 * a).clamp_(min=0)
        return 1.0 - a

    def nearest(self, s: int, e: int, k: int, q_g: np.ndarray):
        """See `_MatrixSource.nearest`; on a GPU the whole selection runs there."""
        import torch

        block, Q = self.f[s:e], self.Q
        if self.f.device.type != "cpu":
            d = self._dist(block @ self.f.T, self.sq.unsqueeze(0), self.sq[s:e].unsqueeze(1)).pow_(2)
            top = d.max(dim=1).values
            if torch.isnan(top).any():
                raise OccreidError(NAN_INPUT)
            values, index = torch.topk(d, k, dim=1, largest=False, sorted=True)
            if e <= Q:
                q_g[...] = d[:, Q:].cpu().numpy()
            return top.cpu().numpy(), values.cpu().numpy(), index.cpu().numpy()
        from occreid.evaluation.distance import _finish_cpu

        buf = getattr(self, "_buf", None)
        if buf is None or buf.shape[0] < e - s:
            buf = self._buf = torch.empty((e - s, self.N), dtype=torch.float32)
        out = buf[: e - s]
        torch.mm(block, self.f.T, out=out)  # one GEMM into a reused buffer, then in-place numpy passes
        d = out.numpy()
        _finish_cpu(d, self.sq[s:e].numpy(), self.sq.numpy(), self.metric)
        if e <= Q:
            np.square(d[:, Q:], out=q_g)
        return _column_nearest([(d.T, 0)], k, self.N, np.dtype(np.float32))

    def pairs(self, i: np.ndarray, j: np.ndarray, chunk: int = 16384) -> np.ndarray:
        import torch

        out = np.empty(len(i), dtype=np.float32)
        for s in range(0, len(i), chunk):
            ii = torch.from_numpy(i[s : s + chunk]).to(self.f.device)
            jj = torch.from_numpy(j[s : s + chunk]).to(self.f.device)
            dot = (self.f[ii] * self.f[jj]).sum(dim=1)
            d = self._dist(dot, self.sq[jj], self.sq[ii])
            out[s : s + chunk] = d.pow_(2).cpu().numpy()
        return out


Parts = list[tuple[np.ndarray, int]]  # vertical pieces (n_i, B) of a column block, each with its first row


def _column_nearest(parts: Parts, k: int, n: int, dtype: np.dtype):
    """(top (B,), values (B, k), index (B, k)) for the columns of a block given as vertical parts: each
    column's largest squared entry and its k smallest squared entries, ascending, with their rows.

    Squaring keeps the order of non-negative numbers, so float32 distances are selected as they are and only
    the chosen entries are squared (as the reference does, in float32); negative entries or other dtypes are
    squared in their dtype and cast first, as the reference does.
    """
    squared = dtype != np.float32
    if squared:
        parts = [(np.square(p, dtype=dtype).astype(np.float32), first) for p, first in parts]
    bound, lowest = _kth_bound(parts, k)
    if lowest < 0:  # squares reorder negative entries: select on the squares
        parts, squared = [(np.square(p, dtype=np.float32), first) for p, first in parts], True
        bound, _ = _kth_bound(parts, k)
    top = np.max([p.max(axis=0) for p, _ in parts], axis=0)  # NaN propagates: one cheap check per block
    if np.isnan(top).any():
        raise OccreidError(NAN_INPUT)
    values, index = _smallest_k(parts, k, n, bound)
    return (top, values, index) if squared else (np.square(top), np.square(values), index)


def _kth_bound(parts: Parts, k: int) -> tuple[np.ndarray, float]:
    """(an upper bound on each column's k-th smallest entry, the smallest entry of the block).

    Split each part's rows into k groups: group minima are distinct entries, so the k-th smallest of all
    group minima (and leftover rows) bounds the k-th smallest entry from above. On random 128-d features
    about 80 entries per column fall under it, for k = 21, n = 6,000.
    """
    samples = []
    for p, _ in parts:
        group = len(p) // k
        if group > 1:
            samples.append(p[: group * k].reshape(k, group, -1).min(axis=1))
            p = p[group * k :]
        samples.append(p)
    samples = np.concatenate(samples)
    return np.partition(samples, k - 1, axis=0)[k - 1], float(samples.min())


def _smallest_k(parts: Parts, k: int, n: int, bound: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The k smallest entries of each column (ties by row) among those at or below `bound`, for non-negative
    float32 parts: one numpy value sort of int64 keys packing (column, float bits, row), as the bits of a
    non-negative float32 order like the float itself. About 3x faster than torch.topk."""
    B = len(bound)
    row_bits, col_bits = int(n).bit_length(), int(B).bit_length()
    if row_bits + 31 + col_bits > 63:  # over a million rows: the keys would not fit, use torch.topk
        import torch

        block = torch.from_numpy(np.ascontiguousarray(np.concatenate([p for p, _ in parts])))
        values, index = torch.topk(block, k, dim=0, largest=False)
        return values.T.numpy(), index.T.numpy().astype(np.int32)
    keys = []
    for p, first in parts:
        if p.strides[0] < p.strides[1]:  # a transposed view: scan it in its memory order
            flat = np.flatnonzero(p.T <= bound[:, None])
            col = flat // len(p)
            row = flat - col * len(p)
        else:
            flat = np.flatnonzero(p <= bound)
            row = flat // B
            col = flat - row * B
        bits = (p[row, col] + np.float32(0)).view(np.int32).astype(np.int64)  # + 0 turns -0.0 into +0.0
        keys.append((col << (31 + row_bits)) | (bits << row_bits) | (row + first))
    packed = np.sort(np.concatenate(keys))
    count = np.bincount(packed >> (31 + row_bits), minlength=B)  # >= k for every column, by the bound
    picked = packed[(np.cumsum(count) - count)[:, None] + np.arange(k)]
    values = ((picked >> row_bits) & 0x7FFFFFFF).astype(np.int32).view(np.float32)
    return values, (picked & ((1 << row_bits) - 1)).astype(np.int32)


def _neighbours(src, k: int, chunk_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One pass over column blocks: each column's max, its k nearest (sorted) with normalised distances, and
    the normalised query x gallery block. Returns (colmax (N,), nbr (N, k), nbr_dist (N, k), q_g (Q, G))."""
    N, Q = src.N, src.Q
    colmax = np.empty(N, dtype=np.float32)
    nbr = np.empty((N, k), dtype=np.int32)  # halves the gathers in the set arithmetic below
    nbr_dist = np.empty((N, k), dtype=np.float32)
    q_g = np.empty((Q, src.G), dtype=np.float32)

    def block(span: tuple[int, int]) -> None:
        s, e = span
        top, values, nbr[s:e] = src.nearest(s, e, k, q_g[s:e])
        top[top <= 0] = 1.0  # a column of zeros stays zeros (the reference gives NaN)
        colmax[s:e] = top
        np.divide(values, top[:, None], out=nbr_dist[s:e])
        if e <= Q:
            q_g[s:e] /= top[:, None]

    _map(block, _blocks(N, Q, chunk_size), src.workers)
    return colmax, nbr, nbr_dist, q_g


def _reciprocal_mask(nbr: np.ndarray, k: int) -> np.ndarray:
    """(N, k + 1) bool: entry (i, c) is True when i is among the k + 1 nearest of j = nbr[i, c] (Eq. 6)."""
    forward = nbr[:, : k + 1]
    return (nbr[forward, : k + 1] == np.arange(nbr.shape[0])[:, None, None]).any(axis=2)


def _expanded_sets(nbr: np.ndarray, k1: int, workers: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """K*(i) of Eq. 9 for every i, as (row, column) pairs grouped by row, without duplicates.

    Also returns slot (same length): the position of the column in nbr[row], or -1 when it is not there.
    Set membership and the slot lookup use dense (B, N) maps over a block of B rows (about 20 MB per
    thread), read and written through flat indices row * N + col (1-D takes are several times faster than
    2-D fancy indexing); de-duplication is one value sort of those flat indices.
    """
    N, k = nbr.shape
    half = int(np.around(k1 / 2.0))
    f1, fh = nbr[:, : k1 + 1], nbr[:, : half + 1]
    m1, mh = _reciprocal_mask(nbr, k1), _reciprocal_mask(nbr, half)
    half_size = mh.sum(axis=1)  # |R(j, k1/2) reciprocal| for every j
    B = max(1, min(N, (1 << 22) // N))
    scratch = threading.local()

    def block(s: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not hasattr(scratch, "mark"):
            scratch.mark = np.zeros(B * N, dtype=bool)  # K(i) of the block's rows, flat
            scratch.ids = np.full(B * N, -1, dtype=np.int32)  # slot lookup, flat
        mark, ids = scratch.mark, scratch.ids
        e = min(s + B, N)
        base = (np.arange(e - s, dtype=np.int64) * N)[:, None]
        F, M = f1[s:e], m1[s:e]
        k_flat = (base + F)[M]
        mark[k_flat] = True
        members = fh[F]  # (b, k1 + 1, half + 1): the half-size neighbours of each candidate j in R(i, k1)
        m_flat = base[:, :, None] + members
        valid = mh[F] & M[:, :, None]
        in_k = mark[m_flat] & valid
        accept = M & (in_k.sum(axis=2) > 2.0 / 3 * half_size[F])  # the reference's float comparison
        mark[k_flat] = False
        flat = np.sort(np.concatenate([k_flat, m_flat[accept[:, :, None] & valid]]))
        first = np.empty(len(flat), dtype=bool)
        first[:1] = True
        np.not_equal(flat[1:], flat[:-1], out=first[1:])
        flat = flat[first]  # unique (row, col), sorted by row then column
        nb_flat = (base + nbr[s:e]).ravel()
        ids[nb_flat] = np.tile(np.arange(k, dtype=np.int32), e - s)
        slots = ids[flat]
        ids[nb_flat] = -1
        r = flat // N
        return r + s, flat - r * N, slots

    parts = _map(block, list(range(0, N, B)), workers)
    return tuple(np.concatenate(column) for column in zip(*parts))


def _row_normalised_weights(rows: np.ndarray, d: np.ndarray, N: int) -> np.ndarray:
    w = np.exp(-d.astype(np.float32))
    total = np.bincount(rows, weights=w, minlength=N)
    return (w / total[rows]).astype(np.float32)


def _sort_keys(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted keys, order) for non-negative integer keys, order stable.

    Packs (key, position) into one int64 and sorts values rather than calling argsort: numpy's SIMD value
    sort is several times faster than its argsort (about 4 ms vs 18 ms for 700k keys). Falls back to a stable
    argsort when the packed value would not fit in 63 bits.
    """
    n = len(keys)
    bits = max(1, int(n).bit_length())
    top = int(keys.max()) if n else 0
    if top.bit_length() + bits > 62:
        order = np.argsort(keys, kind="stable")
        return keys[order], order
    packed = np.sort((keys.astype(np.int64) << bits) | np.arange(n, dtype=np.int64))
    return packed >> bits, packed & ((1 << bits) - 1)


def _merge_entries(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, Q: int, N: int):
    """Sum duplicate (row, col) entries (rows come sorted) and lay them out as the Jaccard term reads them:
    query entries grouped by row, gallery entries grouped by column (an inverted index). Returns
    ((rows, cols, vals) of the queries, the same of the gallery)."""
    bits = int(N).bit_length()  # shifts and masks instead of int64 division
    mask = (1 << bits) - 1
    split = int(np.searchsorted(rows, Q))
    q_keys, q_vals = _sum_duplicates((rows[:split] << bits) | cols[:split], vals[:split])
    g_keys, g_vals = _sum_duplicates((cols[split:] << bits) | rows[split:], vals[split:])
    return (q_keys >> bits, q_keys & mask, q_vals), (g_keys & mask, g_keys >> bits, g_vals)


def _sum_duplicates(keys: np.ndarray, vals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted unique keys, the sum of vals over each key)."""
    keys, order = _sort_keys(keys)
    first = np.empty(len(keys), dtype=bool)
    first[:1] = True
    np.not_equal(keys[1:], keys[:-1], out=first[1:])
    uniq = keys[first]
    return uniq, np.bincount(np.cumsum(first) - 1, weights=vals[order], minlength=len(uniq))


def _query_expansion(rows, cols, vals, nbr: np.ndarray, k2: int, Q: int, N: int):
    """V(i) <- mean of V(j) over the k2 nearest j of i (j = nbr[i, :k2]); entries come grouped by row and
    leave laid out by `_merge_entries`."""
    take = nbr[:, :k2]
    count = np.bincount(rows, minlength=N)
    start = np.cumsum(count) - count
    src = take.ravel()  # row of V contributing to output row repeat(arange(N), k2)
    out_row = np.repeat(np.arange(N), take.shape[1])
    n_each = count[src]
    out_rows = np.repeat(out_row, n_each)
    flat = np.repeat(start[src] - (np.cumsum(n_each) - n_each), n_each) + np.arange(int(n_each.sum()))
    return _merge_entries(out_rows, cols[flat], vals[flat] / take.shape[1], Q, N)


def _final_distances(
    query, gallery, q_g: np.ndarray, lambda_value: float, workers: int, budget: int = 100_000
) -> np.ndarray:
    """(1 - lambda) d_J + lambda d for queries x gallery (Eq. 11 and the blend), written over q_g.

    d_J needs m(i, g) = sum_l min(V(i, l), V(Q + g, l)) over the columns l that query i and gallery item g
    share: (query, column, gallery) triples, worked through in chunks of queries with about `budget` triples
    each (cache-sized temporaries, ~40 bytes per triple), spread over `workers` threads. Entries come laid
    out by `_merge_entries`.
    """
    Q, G = q_g.shape
    (q_rows, q_cols, q_vals), (g_rows, g_cols, g_vals) = query, gallery
    q_vals, g_rows, g_vals = q_vals.astype(np.float32), g_rows - Q, g_vals.astype(np.float32)
    col_count = np.bincount(g_cols, minlength=Q + G)
    col_start = np.cumsum(col_count) - col_count
    work = np.cumsum(np.bincount(q_rows, weights=col_count[q_cols], minlength=Q))
    cuts = np.searchsorted(work, np.arange(budget, work[-1] if Q else 0, budget))
    queries = np.unique(np.concatenate([[0], cuts, [Q]]))  # chunk boundaries, in queries
    entries = np.searchsorted(q_rows, queries)
    steps = np.arange(int(np.diff(np.concatenate([[0], work])).max(initial=0)) + budget)

    def chunk(i: int) -> None:
        (qa, qb), (lo, hi) = queries[i : i + 2], entries[i : i + 2]
        c, n_each = q_cols[lo:hi], col_count[q_cols[lo:hi]]
        ends = np.cumsum(n_each)
        idx = np.repeat(col_start[c] - (ends - n_each), n_each)  # positions of the columns' gallery entries
        idx += steps[: len(idx)]
        mins = g_vals[idx]
        np.minimum(mins, np.repeat(q_vals[lo:hi], n_each), out=mins)
        flat = g_rows[idx]
        flat += np.repeat((q_rows[lo:hi] - qa) * G, n_each)
        m = np.zeros((qb - qa) * G, dtype=np.float32)
        np.add.at(m, flat, mins)
        # the reference's float32 operations in its order, while the rows are in cache
        jaccard = np.subtract(2.0, m)
        np.divide(m, jaccard, out=jaccard)
        np.subtract(1.0, jaccard, out=jaccard)
        jaccard *= 1.0 - lambda_value
        out = q_g[qa:qb]
        out *= lambda_value
        out += jaccard.reshape(qb - qa, G)

    _map(chunk, list(range(len(queries) - 1)), workers)
    return q_g


def _re_rank(src, k1: int, k2: int, lambda_value: float, chunk_size: int) -> np.ndarray:
    _check_params(k1, k2, lambda_value)
    N = src.N
    if N == 0:
        return np.empty((0, 0), dtype=np.float32)
    k = min(max(k1 + 1, k2), N)
    workers = _workers()
    colmax, nbr, nbr_dist, q_g = _neighbours(src, k, chunk_size)

    rows, cols, slot = _expanded_sets(nbr, k1, workers)
    # Normalised distances d(i, j) for K*(i): from the neighbour table where present, else computed.
    found = slot >= 0
    d = np.empty(len(rows), dtype=np.float32)
    d[found] = nbr_dist[rows[found], slot[found]]
    missing = ~found
    if missing.any():
        d[missing] = src.pairs(rows[missing], cols[missing]) / colmax[rows[missing]]
    vals = _row_normalised_weights(rows, d, N).astype(np.float64)
    if k2 != 1:
        entries = _query_expansion(rows, cols, vals, nbr, k2, src.Q, N)
    else:
        entries = _merge_entries(rows, cols, vals, src.Q, N)
    return _final_distances(*entries, q_g, lambda_value, workers)


def re_ranking(
    q_g_dist: Any,
    q_q_dist: Any,
    g_g_dist: Any,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    chunk_size: int = 1024,
) -> np.ndarray:
    """k-reciprocal re-ranking from three distance matrices (module docstring for the equations).

    Args:
        q_g_dist: (Q, G) query-gallery distances; q_q_dist: (Q, Q); g_g_dist: (G, G). numpy or torch.
        k1, k2, lambda_value: the paper's parameters (defaults 20, 6, 0.3 as in Zhong et al.).
        chunk_size: columns of the joint matrix processed at once.

    Returns:
        (Q, G) float32 numpy array of re-ranked distances, equal to the reference implementation's.

    Beyond the inputs, memory is O((Q + G) x k1) plus the (Q, G) output. Prefer `re_ranking_features`, which
    never needs the (G, G) matrix at all.
    """
    return _re_rank(_MatrixSource(q_g_dist, q_q_dist, g_g_dist), k1, k2, lambda_value, chunk_size)


def re_ranking_features(
    qf: Any,
    gf: Any,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    metric: str = "euclidean",
    normalize: bool = False,
    chunk_size: int = 1024,
) -> np.ndarray:
    """k-reciprocal re-ranking from features, never materialising a (Q + G)^2 matrix (the scalable path).

    Equals `re_ranking(compute_distance(qf, gf), compute_distance(qf, qf), compute_distance(gf, gf))` with the
    same `metric` / `normalize` (so "euclidean" feeds squared Euclidean distances, as torchreid does).

    Args:
        qf: (Q, D) and gf: (G, D) features, numpy or torch (a CUDA tensor computes the distances on the GPU).

    Returns:
        (Q, G) float32 numpy array.
    """
    return _re_rank(_FeatureSource(qf, gf, metric, normalize), k1, k2, lambda_value, chunk_size)
