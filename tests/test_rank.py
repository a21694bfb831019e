"""evaluate_rank: hand-computed cases and equality with the classic per-query loop (stable argsort)."""

import numpy as np
import pytest
import torch

from occreid.errors import OccreidError
from occreid.evaluation import EvalResult, evaluate_rank, format_results_table


def reference_eval(distmat, q_pids, g_pids, q_camids, g_camids, max_rank):
    """torchreid's eval_market1501 with a stable argsort, CMC padded with 1 beyond the gallery, plus INP."""
    indices = np.argsort(distmat, axis=1, kind="stable")
    matches = (g_pids[indices] == q_pids[:, None]).astype(np.int32)
    all_cmc, all_ap, all_inp = [], [], []
    for q in range(len(q_pids)):
        order = indices[q]
        keep = ~((g_pids[order] == q_pids[q]) & (g_camids[order] == q_camids[q]))
        raw = matches[q][keep]
        if not raw.any():
            continue
        cmc = raw.cumsum()
        cmc[cmc > 1] = 1
        padded = np.ones(max_rank)
        padded[: min(max_rank, len(cmc))] = cmc[:max_rank]
        all_cmc.append(padded)
        tmp = raw.cumsum() / (np.arange(len(raw)) + 1.0) * raw
        all_ap.append(tmp.sum() / raw.sum())
        last = np.flatnonzero(raw)[-1]
        all_inp.append(raw.cumsum()[last] / (last + 1.0))
    return np.mean(all_cmc, axis=0), np.mean(all_ap), np.mean(all_inp), len(q_pids) - len(all_ap)


def test_hand_computed_single_query():
    # filtered ranking: pid2, pid1 (rank 2), pid3, pid1 (rank 4); the same-camera pid1 at 0.1 is removed
    d = np.array([[0.1, 0.2, 0.3, 0.4, 0.5]], dtype=np.float32)
    r = evaluate_rank(d, [1], [1, 2, 1, 3, 1], [0], [0, 1, 1, 1, 2], max_rank=5)
    assert r.AP[0] == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert r.mINP == pytest.approx(2 / 4)
    np.testing.assert_allclose(r.cmc, [0, 1, 1, 1, 1])
    assert (r.num_valid_queries, r.num_skipped_queries) == (1, 0)


def test_per_query_values_average_to_the_metrics():
    # query 0: first match at rank 2; query 1: at rank 1; query 2: no positive (skipped)
    d = np.array([[0.1, 0.2, 0.3], [0.3, 0.2, 0.1], [0.1, 0.2, 0.3]], dtype=np.float32)
    r = evaluate_rank(d, [1, 2, 9], [2, 1, 2], [0, 0, 0], [1, 1, 1], max_rank=3)
    per = r.per_query()
    assert per["rank1"] == [0, 1, None] and per["AP"][2] is None and per["INP"][2] is None
    assert per["AP"][:2] == pytest.approx([1 / 2, (1 / 1 + 2 / 3) / 2])
    assert np.mean(per["rank1"][:2]) == r.cmc[0] and np.mean(per["AP"][:2]) == pytest.approx(r.mAP)
    assert np.mean(per["INP"][:2]) == pytest.approx(r.mINP)


def test_hand_computed_distractors_and_junk():
    # Gallery in index order (pid, camera, distance to query 0 / query 1). Query 0 is pid 3 in camera 0,
    # query 1 is pid 5 in camera 1.
    #   g0  pid 0 (distractor)  cam 1   0.10 / 0.90
    #   g1  pid 3               cam 0   0.15 / 0.80   same pid + same camera as q0: removed for q0
    #   g2  pid 3               cam 1   0.50 / 0.70   positive of q0
    #   g3  pid -1 (junk image) cam 2   0.25 / 0.10   not removed: an ordinary wrong match
    #   g4  pid 0 (distractor)  cam 0   0.30 / 0.60   same camera as q0 but another pid: kept
    #   g5  pid 3               cam 2   0.20 / 0.50   positive of q0
    #   g6  pid 5               cam 1   0.40 / 0.20   same pid + same camera as q1: removed for q1
    #   g7  pid 5               cam 0   0.60 / 0.30   positive of q1
    #   g8  pid 5               cam 2   0.70 / 0.40   positive of q1
    g_pids, g_cams = [0, 3, 3, -1, 0, 3, 5, 5, 5], [1, 0, 1, 2, 0, 2, 1, 0, 2]
    d = np.array(
        [
            [0.10, 0.15, 0.50, 0.25, 0.30, 0.20, 0.40, 0.60, 0.70],
            [0.90, 0.80, 0.70, 0.10, 0.60, 0.50, 0.20, 0.30, 0.40],
        ],
        dtype=np.float32,
    )
    r = evaluate_rank(d, [3, 5], g_pids, [0, 1], g_cams, max_rank=4)
    # q0 ranking after removing g1: g0 (wrong), g5 (match, rank 2), g3 (junk, wrong), g4 (wrong), g6 (wrong),
    # g2 (match, rank 6), ...
    assert r.AP[0] == pytest.approx((1 / 2 + 2 / 6) / 2)
    assert r.INP[0] == pytest.approx(2 / 6)
    # q1 ranking after removing g6: g3 (junk, wrong), g7 (match, rank 2), g8 (match, rank 3), ...
    assert r.AP[1] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert r.INP[1] == pytest.approx(2 / 3)
    np.testing.assert_allclose(r.cmc, [0, 1, 1, 1])
    assert r.mAP == pytest.approx(((1 / 2 + 2 / 6) / 2 + (1 / 2 + 2 / 3) / 2) / 2)
    assert r.mINP == pytest.approx((2 / 6 + 2 / 3) / 2)
    assert (r.num_valid_queries, r.num_skipped_queries) == (2, 0)


def test_ties_break_by_gallery_index():
    # wrong match listed first at the same distance -> it ranks first
    r = evaluate_rank(np.array([[0.5, 0.5, 0.7]]), [1], [2, 1, 1], [0], [1, 1, 1], max_rank=3)
    assert r.mAP == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert r.mINP == pytest.approx(2 / 3)
    np.testing.assert_allclose(r.cmc, [0, 1, 1])
    # listed second -> the match ranks first
    r = evaluate_rank(np.array([[0.5, 0.5]]), [1], [1, 2], [0], [1, 1], max_rank=2)
    assert r.mAP == 1.0 and r.cmc[0] == 1.0
    # a removed same-camera item tied with a positive does not count
    r = evaluate_rank(np.array([[0.5, 0.5]]), [1], [1, 1], [0], [0, 1], max_rank=2)
    assert r.mAP == 1.0


def test_skipped_queries_and_same_camera_filter():
    d = np.array([[0.1, 0.9, 0.5], [0.3, 0.2, 0.1], [0.4, 0.4, 0.4]], dtype=np.float32)
    # q0: its only pid-5 gallery item is in its own camera -> skipped; q2: pid 9 absent -> skipped
    r = evaluate_rank(d, [5, 7, 9], [5, 7, 8], [0, 0, 0], [0, 1, 1], max_rank=3)
    assert (r.num_valid_queries, r.num_skipped_queries) == (1, 2)
    assert np.isnan(r.AP[0]) and np.isnan(r.AP[2])
    assert r.AP[1] == pytest.approx(1 / 2)  # q1: gallery 2 (0.1) ahead of its match (0.2) -> rank 2
    np.testing.assert_array_equal(r.valid, [False, True, False])


def test_all_queries_skipped_is_a_clear_error():
    with pytest.raises(OccreidError, match="no query has a positive"):
        evaluate_rank(np.zeros((2, 2)), [1, 2], [1, 2], [0, 0], [0, 0])


@pytest.mark.parametrize(
    "num_q,num_g,max_rank,num_pids,num_cams,quantise",
    [(60, 400, 50, 25, 4, None), (30, 20, 50, 8, 2, None), (80, 500, 10, 30, 6, 20), (50, 300, 30, 12, 3, 5)],
)
def test_equals_reference_loop(num_q, num_g, max_rank, num_pids, num_cams, quantise):
    rng = np.random.default_rng(num_q + num_g)
    d = rng.random((num_q, num_g)).astype(np.float32)
    if quantise:  # many exact ties
        d = np.round(d * quantise) / quantise
    qp, gp = rng.integers(0, num_pids, num_q), rng.integers(0, num_pids, num_g)
    qc, gc = rng.integers(0, num_cams, num_q), rng.integers(0, num_cams, num_g)
    r = evaluate_rank(d, qp, gp, qc, gc, max_rank=max_rank, chunk_size=16)
    cmc, m_ap, m_inp, skipped = reference_eval(d, qp, gp, qc, gc, max_rank)
    assert r.cmc.shape == (max_rank,)
    np.testing.assert_allclose(r.cmc, cmc, atol=1e-12)
    assert r.mAP == pytest.approx(m_ap, abs=1e-12)
    assert r.mINP == pytest.approx(m_inp, abs=1e-12)
    assert r.num_skipped_queries == skipped
    # torch and float64 inputs give the same numbers
    r_t = evaluate_rank(torch.from_numpy(d), torch.from_numpy(qp), gp, qc, gc, max_rank=max_rank)
    r_64 = evaluate_rank(d.astype(np.float64), qp, gp, qc, gc, max_rank=max_rank, chunk_size=7)
    for other in (r_t, r_64):
        np.testing.assert_array_equal(other.cmc, r.cmc)
        assert other.mAP == pytest.approx(r.mAP, abs=1e-12)


def test_bad_inputs_name_the_problem():
    with pytest.raises(OccreidError, match="g_pids"):
        evaluate_rank(np.zeros((1, 3)), [1], [1, 2], [0], [1, 1, 1])
    with pytest.raises(OccreidError, match="NaN"):
        evaluate_rank(np.array([[np.nan, 0.1]]), [1], [1, 2], [0], [1, 1])


def test_report_table():
    d = np.array([[0.1, 0.2, 0.3, 0.4, 0.5]], dtype=np.float32)
    r = evaluate_rank(d, [1], [1, 2, 1, 3, 1], [0], [0, 1, 1, 1, 2], max_rank=5)
    table = format_results_table({"baseline": r}, ranks=(1, 3))
    assert "| baseline | 0.0 | 100.0 | 50.0 | 50.0 | 1 (0) |" in table
    assert "Rank-3" in table and "Rank-5" not in table
    assert isinstance(r, EvalResult)


def test_torch_and_numpy_rank_paths_agree():
    # The CPU path is numpy; the torch path (used for CUDA distance matrices) must give the same ranks.
    from occreid.evaluation.rank import _positive_ranks, _positive_ranks_numpy, _same_pid_pairs

    rng = np.random.default_rng(11)
    d = rng.random((40, 300)).astype(np.float32)
    d[3, 17] = d[3, 5]  # an exact tie
    qp, gp = rng.integers(0, 10, 40), rng.integers(0, 10, 300)
    qc, gc = rng.integers(0, 3, 40), rng.integers(0, 3, 300)
    rows, cols = _same_pid_pairs(qp, gp)
    removed = gc[cols] == qc[rows]
    n = np.bincount(rows[~removed], minlength=40)
    args = (n, cols[~removed], rows[removed], cols[removed])
    a = _positive_ranks(torch.from_numpy(d), *args)
    b = _positive_ranks_numpy(d, *args, sort_buffer=np.empty_like(d))
    inside = np.arange(a.shape[1])[None, :] < n[:, None]  # only the first n_i columns are defined
    np.testing.assert_array_equal(np.nan_to_num(a, nan=-1)[inside], np.nan_to_num(b, nan=-1)[inside])
    assert np.isfinite(b[:, 0][n > 0]).sum() >= 30  # most rows are resolved by the fast path
