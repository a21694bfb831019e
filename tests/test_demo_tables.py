"""The demo's model list and table, and the accuracy study's row specs and mean +- std table."""

import importlib.util
from pathlib import Path

import pytest

from occreid.apps.demo.report import _table
from occreid.apps.demo.run import MODELS
from occreid.config import load_config
from occreid.methods import presets
from occreid.methods.pgfl_kd import POSE_FEATURES

_spec = importlib.util.spec_from_file_location(
    "bench_accuracy", Path(__file__).parents[1] / "benchmarks" / "bench_accuracy.py"
)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_demo_models_share_backbone_schedule_and_start_from_imagenet():
    cfgs = [load_config(m.config) for m in MODELS]
    assert [m.key for m in MODELS] == ["baseline", "vit_baseline", "pgfl_kd", "ogfr"]
    assert [c.model.name for c in cfgs] == ["baseline", "baseline", "pgfl_kd", "ogfr"]
    # The CNNs share the ImageNet MobileNetV2, the ViTs the hybrid on its ImageNet stem.
    backbones = ["mobilenet_v2", "vit_hybrid_mnv2", "mobilenet_v2", "vit_hybrid_mnv2"]
    assert [c.model.backbone for c in cfgs] == backbones
    for cfg in cfgs:
        assert cfg.model.pretrained is True and cfg.model.test_feature == "f_G"
        # Every model has the same schedule, data and ReID loss settings.
        assert cfg.train.model_dump() == cfgs[0].train.model_dump() | {"output_dir": cfg.train.output_dir}
        assert cfg.data.model_dump() == cfgs[0].data.model_dump() and cfg.loss == cfgs[0].loss
    assert MODELS[2].pose_features == POSE_FEATURES


def _row(title, map_, pose=None):
    row = {
        "title": title,
        "rank1": 0.5,
        "rank5": 0.7,
        "mAP": map_,
        "mINP": 0.1,
        "params": 2.2e6,
        "flops": 1.2e8,
        "ms_per_query": 3.0,
    }
    if pose:
        row["pose_at_test"] = pose
    return row


def test_demo_table_has_one_f_g_line_per_model_then_pose_lines():
    pose = {"f_P": {"rank1": 0.4, "mAP": 0.25, "mINP": 0.1}, "f_E": {"rank1": 0.6, "mAP": 0.35, "mINP": 0.2}}
    text = _table({"a": _row("Baseline", 0.30), "b": _row("PGFL-KD", 0.31, pose), "c": _row("OGFR", 0.4)})
    lines = text.splitlines()[2:]
    assert [line.split("|")[1:3] for line in lines] == [
        [" Baseline ", " f_G "],
        [" PGFL-KD ", " f_G "],
        [" OGFR ", " f_G "],
        [" PGFL-KD ", " f_P, pose at test (not deployable pose-free) "],
        [" PGFL-KD ", " f_E, pose at test (not deployable pose-free) "],
    ]
    assert "| 30.0 |" in lines[0] and "| 2.20 | 0.120 | 3.0 |" in lines[0] and "| 35.0 |" in lines[4]


def test_bench_row_specs():
    label, configs, overrides = bench.parse_row("table6_row2_sab")
    assert (label, configs[0], overrides) == ("table6_row2_sab", "configs/demo/pgfl_kd.yaml", [])
    assert configs[1] == str(presets()["table6_row2_sab"])
    cfg = load_config(configs, overrides)
    assert cfg.model.name == "pgfl_kd" and cfg.train.epochs == load_config(configs[0]).train.epochs
    assert (
        cfg.pgfl_kd.sab
        and not cfg.pgfl_kd.interaction
        and not cfg.pgfl_kd.feb
        and cfg.model.backbone == "mobilenet_v2"
    )
    assert bench.parse_row("ogfr=configs/x.yaml,train.epochs=3,pgfl_kd.lambda_cl=1") == (
        "ogfr",
        ["configs/x.yaml"],
        ["train.epochs=3", "pgfl_kd.lambda_cl=1"],
    )
    with pytest.raises(SystemExit, match="neither a preset"):
        bench.parse_row("table6_row9")
    assert bench.TABLE6 == [k for k in presets() if k.startswith("table6")]
    ogfr_configs = bench.parse_row("ogfr_row4_fepm_random")[1]
    assert load_config(ogfr_configs).ogfr.fepm == "random" and ogfr_configs[0] == "configs/demo/ogfr.yaml"


def test_bench_table_mean_std_and_paired_gains():
    def rec(m, pose=None):
        return {"rank1": m, "mAP": m, "mINP": m / 2, **({"pose_at_test": pose} if pose else {})}

    pose = {"f_P": {"rank1": 0.2, "mAP": 0.2, "mINP": 0.1}}
    results = {
        "table6_row1_baseline": {"0": rec(0.30), "1": rec(0.32)},
        "table6_row6_pgfl_kd": {"0": rec(0.35, pose), "1": rec(0.33, pose)},
    }
    text = bench.table(results, list(results), [0, 1])
    assert (
        "| table6_row1_baseline | f_G | 31.0 ± 1.4 | 31.0 ± 1.4 | 15.5 ± 0.7 | 30.0 32.0 | 52.7 / 45.9 |"
        in text
    )
    assert "|   table6_row6_pgfl_kd | f_P (pose at test) | 20.0 ± 0.0 |" in text
    (gain,) = bench.gains(results, list(results), [0, 1])
    assert gain == "- table6_row6_pgfl_kd - table6_row1_baseline: mAP 3.0 ± 2.8 (per seed: 0: +5.0, 1: +1.0)"
    # A ladder: each row over the one above; a row with fewer seeds says so and a single value has no spread.
    results["table6_row2_sab"] = {"1": rec(0.40)}
    labels = ["table6_row1_baseline", "table6_row2_sab", "table6_row6_pgfl_kd"]
    steps = bench.gains(results, labels, [0, 1], previous=True)
    assert steps == [
        "- table6_row2_sab - table6_row1_baseline: mAP 8.0 (per seed: 1: +8.0)",
        "- table6_row6_pgfl_kd - table6_row2_sab: mAP -7.0 (per seed: 1: -7.0)",
    ]
    assert "| table6_row2_sab | f_G | 40.0 | 40.0 | 20.0 | 40.0 (1 of 2 seeds) |" in bench.table(
        results, labels, [0, 1]
    )


def test_bench_merge_adds_side_by_side_studies_and_trains_nothing_with_report(tmp_path, monkeypatch):
    import json
    import sys

    def rec(m):
        return {"rank1": m, "mAP": m, "mINP": m / 2}

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "all").mkdir()
    (tmp_path / "a" / "results.json").write_text(json.dumps({"table6_row1_baseline": {"0": rec(0.3)}}))
    (tmp_path / "b" / "results.json").write_text(
        json.dumps({"table6_row1_baseline": {"1": rec(0.4)}, "table6_row2_sab": {"0": rec(0.5)}})
    )
    (tmp_path / "all" / "results.json").write_text(json.dumps({"table6_row2_sab": {"1": rec(0.6)}}))
    monkeypatch.setattr(bench, "train", lambda *a, **k: pytest.fail("--report trained"))
    monkeypatch.setattr(bench, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "bench_accuracy.py",
            "--out",
            str(tmp_path / "all"),
            "--report",
            "--seeds",
            "0",
            "1",
            "--rows",
            "table6_row1_baseline",
            "table6_row2_sab",
            "--merge",
            str(tmp_path / "a"),
            str(tmp_path / "b"),
        ],
    )
    bench.main()
    merged = json.loads((tmp_path / "all" / "results.json").read_text())
    assert {k: sorted(v) for k, v in merged.items()} == {
        "table6_row1_baseline": ["0", "1"],
        "table6_row2_sab": ["0", "1"],
    }
    text = (tmp_path / "results" / "bench_accuracy.md").read_text()
    assert "- table6_row2_sab - table6_row1_baseline: mAP 20.0 ± 0.0 (per seed: 0: +20.0, 1: +20.0)" in text
