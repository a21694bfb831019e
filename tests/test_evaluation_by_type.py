"""Metrics per occluder type: each type's queries against the whole gallery, equal to the metrics computed by
hand on that subset; the JSON, the table rows and the trainer's log carry them."""

import numpy as np
import pytest
import torch

from occreid.config import Config
from occreid.data.records import ImageRecord
from occreid.engine.trainer import _log_eval
from occreid.evaluation import format_results_table, results_to_json
from occreid.evaluation.by_type import evaluate_by_type
from occreid.evaluation.evaluate import evaluate_features


def _by_hand(distmat, q_pids, g_pids, q_cams, g_cams, rows, max_rank):
    """Rank-1, CMC, mAP, mINP of the queries `rows` by an explicit loop over each query's ranked gallery."""
    aps, inps, firsts = [], [], []
    for q in rows:
        order = sorted(range(len(g_pids)), key=lambda g: (distmat[q, g], g))  # stable: ties by gallery index
        kept = [g for g in order if not (g_pids[g] == q_pids[q] and g_cams[g] == q_cams[q])]
        hits = [rank for rank, g in enumerate(kept, start=1) if g_pids[g] == q_pids[q]]
        if not hits:
            continue
        aps.append(sum(j / r for j, r in enumerate(hits, start=1)) / len(hits))
        inps.append(len(hits) / hits[-1])
        firsts.append(hits[0])
    cmc = [np.mean([f <= k for f in firsts]) for k in range(1, max_rank + 1)]
    return cmc, np.mean(aps), np.mean(inps), len(aps)


def _problem(seed=0, num_q=40, num_g=90):
    rng = np.random.default_rng(seed)
    q_pids, g_pids = rng.integers(0, 12, num_q), rng.integers(0, 15, num_g)
    q_cams, g_cams = rng.integers(0, 3, num_q), rng.integers(0, 3, num_g)
    distmat = rng.random((num_q, num_g)).astype(np.float32)
    distmat[:, :10] = np.round(distmat[:, :10], 1)  # some exact ties
    types = list(rng.choice(["vehicle", "pole", "none", "board"], num_q))
    types[0] = types[1] = None  # unknown types join no group
    return distmat, q_pids, g_pids, q_cams, g_cams, types


def test_per_type_metrics_equal_the_metrics_of_that_subset_by_hand():
    distmat, q_pids, g_pids, q_cams, g_cams, types = _problem()
    per_type = evaluate_by_type(distmat, q_pids, g_pids, q_cams, g_cams, types, max_rank=10)
    assert list(per_type) == ["board", "pole", "vehicle", "none"]  # sorted, unoccluded last
    for name, result in per_type.items():
        rows = [i for i, t in enumerate(types) if t == name]
        cmc, mAP, mINP, valid = _by_hand(distmat, q_pids, g_pids, q_cams, g_cams, rows, 10)
        assert result.num_valid_queries == valid and len(result.AP) == len(rows)
        assert result.num_gallery == len(g_pids)  # against the whole gallery
        np.testing.assert_allclose(result.cmc, cmc)
        assert result.mAP == pytest.approx(mAP) and result.mINP == pytest.approx(mINP)


def test_a_type_without_any_positive_is_left_out():
    distmat, q_pids, g_pids, q_cams, g_cams, _ = _problem(num_q=4)
    q_pids = np.array([100, 100, q_pids[2], q_pids[3]])  # pid 100 is not in the gallery
    g_pids[0], g_cams[0] = q_pids[2], (q_cams[2] + 1) % 3  # query 2 has a cross-camera positive
    per_type = evaluate_by_type(distmat, q_pids, g_pids, q_cams, g_cams, ["pole", "pole", "board", None])
    assert list(per_type) == ["board"]


def _records(pids, cams, types=None, prefix="q"):
    types = types or [None] * len(pids)
    return [
        ImageRecord(f"/x/{prefix}{i}.jpg", int(p), int(c), None, t)
        for i, (p, c, t) in enumerate(zip(pids, cams, types))
    ]


def test_evaluation_reports_types_in_the_table_the_json_and_the_training_log():
    rng = np.random.default_rng(1)
    q_pids, g_pids = np.repeat(np.arange(6), 2), np.repeat(np.arange(8), 4)
    q_cams, g_cams = np.zeros(12, int), np.tile([0, 1, 2, 1], 8)
    types = ["vehicle", "pole"] * 6
    qf, gf = (
        torch.from_numpy(rng.normal(size=(12, 8))).float(),
        torch.from_numpy(rng.normal(size=(32, 8))).float(),
    )
    gf[:24] = qf.repeat_interleave(2, 0)[:24] * 0.5 + gf[:24] * 0.5  # some signal
    cfg = Config()
    cfg.eval.max_rank = 10
    out = evaluate_features(
        qf, gf, _records(q_pids, q_cams, types), _records(g_pids, g_cams, prefix="g"), cfg
    )
    assert set(out.per_type) == {"vehicle", "pole"}
    weights = [out.per_type[t].num_valid_queries for t in ("vehicle", "pole")]
    assert out.result.mAP == pytest.approx(
        np.average([out.per_type[t].mAP for t in ("vehicle", "pole")], weights=weights)
    )
    payload = results_to_json(out.result, out.settings, out.per_type)
    assert payload["per_occluder_type"]["pole"]["metrics"]["mAP"] == pytest.approx(out.per_type["pole"].mAP)
    assert payload["per_occluder_type"]["pole"]["num_query"] == 6
    assert "whole gallery" in payload["settings"]["per_occluder_type"]
    table = format_results_table(out.table_rows("baseline/f_G"), ranks=(1, 5))
    assert [line.split("|")[1].strip() for line in table.splitlines()[2:]] == [
        "baseline/f_G",
        "baseline/f_G [pole]",
        "baseline/f_G [vehicle]",
    ]
    logged = _log_eval(out, epoch=3, step=30)
    assert logged["mAP[pole]"] == pytest.approx(out.per_type["pole"].mAP)
    assert logged["rank1[vehicle]"] == pytest.approx(out.per_type["vehicle"].cmc[0])
    # Queries without types: no per-type numbers anywhere.
    plain = evaluate_features(qf, gf, _records(q_pids, q_cams), _records(g_pids, g_cams, prefix="g"), cfg)
    assert plain.per_type == {} and "per_occluder_type" not in results_to_json(plain.result, plain.settings)
    assert not any("[" in key for key in _log_eval(plain, 3, 30))
