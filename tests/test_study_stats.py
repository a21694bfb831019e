"""The accuracy study's statistics (benchmarks/study_stats.py) against scipy, and its bookkeeping: per-query
values, provenance, --merge refusing a second run of one row and seed."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

BENCH = Path(__file__).parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))
import study_stats  # noqa: E402

_spec = importlib.util.spec_from_file_location("bench_accuracy", BENCH / "bench_accuracy.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_paired_t_interval_matches_scipy():
    a = np.array([0.331, 0.342, 0.318, 0.355, 0.329])
    b = np.array([0.322, 0.330, 0.321, 0.340, 0.317])
    got = study_stats.t_interval(list(a - b))
    want = stats.ttest_rel(a, b).confidence_interval(0.95)
    assert got.mean == pytest.approx(np.mean(a - b))
    assert (got.low, got.high) == pytest.approx((want.low, want.high), abs=1e-12)
    assert study_stats.t_interval([0.1]) is None


def test_verdict_says_better_only_where_the_interval_excludes_zero():
    assert study_stats.Interval(0.02, 0.001, 0.04).verdict == "better"
    assert study_stats.Interval(-0.02, -0.04, -0.001).verdict == "worse"
    assert study_stats.Interval(0.02, -0.001, 0.04).verdict == "no measurable difference"


def test_bootstrap_of_one_seed_is_scipys_percentile_bootstrap_of_the_mean():
    d = np.random.default_rng(1).normal(0.01, 0.1, size=300)
    got = study_stats.bootstrap_interval([d], resamples=4000)
    want = stats.bootstrap((d,), np.mean, n_resamples=4000, method="percentile", random_state=0)
    ci = want.confidence_interval
    assert got.mean == pytest.approx(d.mean())
    assert got.low == pytest.approx(ci.low, abs=0.003) and got.high == pytest.approx(ci.high, abs=0.003)


def test_bootstrap_over_seeds_widens_with_the_spread_between_seeds():
    rng = np.random.default_rng(0)
    same = [rng.normal(0.02, 0.05, 200) for _ in range(5)]
    spread = [rng.normal(m, 0.05, 200) for m in (-0.08, -0.03, 0.02, 0.07, 0.12)]
    narrow = study_stats.bootstrap_interval(same)
    wide = study_stats.bootstrap_interval(spread)
    assert narrow.low > 0  # the same small gain on every seed
    assert wide.low < 0 < wide.high and (wide.high - wide.low) > 3 * (narrow.high - narrow.low)


def _run(map_, ap, sha="x"):
    return {
        "mAP": map_,
        "rank1": map_,
        "mINP": map_ / 2,
        "per_query": {"AP": ap, "rank1": [1, 0, None], "INP": ap},
        "provenance": {"config_sha256": sha},
    }


def test_compare_pairs_seeds_and_queries_and_reports_all_three_metrics():
    a = {"0": _run(0.5, [0.5, 0.7, None]), "1": _run(0.4, [0.3, 0.5, None]), "2": _run(0.9, [1, 1, None])}
    b = {"0": _run(0.4, [0.4, 0.6, None]), "1": _run(0.3, [0.2, 0.4, None])}
    c = study_stats.compare(a, b, [0, 1, 2])
    assert c["seeds"] == ["0", "1"]
    assert c["mAP"]["per_seed"] == pytest.approx([0.1, 0.1])
    assert c["mAP"]["bootstrap"].mean == pytest.approx(0.1)
    assert set(c) == {"seeds", "mAP", "rank1", "mINP"}
    lines = study_stats.pair_lines({"a": a, "b": b}, [("a", "b")], [0, 1, 2])
    assert lines[2].startswith("| a - b | 2 | ") and lines[2].count("[") == 6


def test_merge_refuses_a_different_run_of_the_same_row_and_seed(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    run = _run(0.3, [0.3, 0.3, None])
    (tmp_path / "a" / "results.json").write_text(json.dumps({"r": {"0": run}}))
    (tmp_path / "b" / "results.json").write_text(json.dumps({"r": {"0": _run(0.31, [0.3, 0.3, None])}}))
    results = {}
    bench.merge_results(results, [tmp_path / "a", tmp_path / "a"])  # the same run twice: kept once
    assert results == {"r": {"0": run}}
    with pytest.raises(SystemExit, match="row r seed 0 is already there from another run"):
        bench.merge_results(results, [tmp_path / "b"])
    assert results["r"]["0"] == run  # nothing overwritten


def test_provenance_hash_ignores_where_a_run_ran_but_not_what_it_is():
    from occreid.config import load_config
    from occreid.utils.provenance import provenance

    def prov(*overrides):
        return provenance(load_config("configs/demo/ogfr.yaml", list(overrides)).model_dump(mode="json"))

    here = prov("train.output_dir=/a", "train.device=cpu", "data.root=/d1", "train.seed=3")
    there = prov("train.output_dir=/b", "train.device=cuda", "data.root=/d2", "train.seed=3")
    assert here["config_sha256"] == there["config_sha256"]
    assert prov("train.seed=4")["config_sha256"] != here["config_sha256"]
    assert set(here) == {"git_commit", "git_dirty", "config_sha256", "occreid_version", "init"}
    assert here["init"] == "imagenet_stem"
    assert prov("model.pretrained=false")["init"] == "random"
    assert provenance({"model": {"backbone": "mobilenet_v2", "pretrained": True}})["init"] == "imagenet"


def test_named_rows_and_controls_load():
    from occreid.config import load_config

    cfg = load_config(*bench.parse_row("vit_control_occluded_long")[1:])
    assert cfg.model.backbone == "vit_hybrid_mnv2" and cfg.baseline.views == "occluded"
    assert cfg.train.steps_per_epoch == 40  # ~2.2x the demo's 18
    both = load_config(bench.parse_row("vit_control_both_views")[1])
    assert both.baseline.views == "both" and both.model.name == "baseline"
    assert both.model.backbone == "vit_hybrid_mnv2"
    student_only = load_config(*bench.parse_row("ogfr_student_only_erasing")[1:])
    assert student_only.occlusion.erasing_views == "student_only" and student_only.ogfr.fepm == "agent"
    results = {"ogfr_row5_fepm_agent": {"3": {"agent_analysis": {"fixed_positions": [1, 5]}}}}
    assert bench.fixed_mask_overrides("ogfr_fixed_mask", results, 3) == ["ogfr.fixed_positions=[1,5]"]
    assert bench.fixed_mask_overrides("ogfr_fixed_mask", results, 4) is None
    assert bench.fixed_mask_overrides("vit_baseline", results, 4) == []
