"""`occreid demo` end to end at a toy size: every model of MODELS is trained on the same SynthOcc, the table
has a row per model and a column per occluder type, and the report's pictures exist (each model's run report,
shown in the demo's)."""

import json

import pytest

import occreid.apps.demo.recording as recording
import occreid.apps.demo.run as demo
from occreid.data.recordings import SynthVideoSettings

pytestmark = pytest.mark.slow

TINY = [
    "data.image_size=[64,32]",
    "data.p=4",
    "data.k=2",
    "data.num_workers=0",
    "train.steps_per_epoch=2",
    "train.warmup_epochs=0",
    "train.eval_period=0",
    "train.log_period=1",
    "eval.batch_size=128",
]


def test_demo_trains_every_model_and_reports_by_occluder_type(tmp_path, monkeypatch, capsys):
    from occreid.config import apply_overrides
    from occreid.data.synthocc import generate

    config = demo.demo_config
    monkeypatch.setattr(demo, "demo_config", lambda *a, **k: apply_overrides(config(*a, **k), TINY))
    monkeypatch.setattr(
        demo,
        "_make_data",
        lambda root, seed, overwrite=False: generate(root, preset="small", seed=seed, protocol="occluded"),
    )
    monkeypatch.setattr(demo, "_ms_per_query", lambda *a: 1.0)
    monkeypatch.setattr(
        recording, "RECORDING", SynthVideoSettings(cameras=3, people=3, frames=12, width=320, height=180)
    )
    rows = demo.run_demo(tmp_path / "demo", seed=0, epochs=1)

    assert list(rows) == [m.key for m in demo.MODELS] == ["baseline", "vit_baseline", "pgfl_kd", "ogfr"]
    saved = json.loads((tmp_path / "demo" / "results.json").read_text())
    assert saved.keys() == rows.keys()
    types = set(saved["baseline"]["per_type"])
    assert {"vehicle", "pole", "board", "person", "clutter"} <= types
    for row in saved.values():
        assert set(row["per_type"]) == types and 0 <= row["mAP"] <= 1
        assert sum(row["per_type_queries"].values()) == 60  # the small preset's 30 identities x 2 queries
        assert row["pretrained"] is True  # every demo model starts from ImageNet (the ViTs' stem)
        assert row["provenance"]["init"] in ("imagenet", "imagenet_stem")
    # The deployed OGFR student costs the ViT baseline's parameters plus its pattern head and embeddings.
    assert saved["ogfr"]["params"] > saved["vit_baseline"]["params"]
    assert saved["ogfr"]["params"] - saved["vit_baseline"]["params"] < 0.1 * saved["vit_baseline"]["params"]
    assert "f_P" in saved["pgfl_kd"]["pose_at_test"]
    report = (tmp_path / "demo" / "report.md").read_text()
    assert "| OGFR |" in report and "by the query's occluder type" in report
    # One report: each model's `occreid report` (in its run folder), shown and linked in the demo's report.md.
    pictures = (
        "curves.png",
        "baseline/report/response_maps.png",
        "pgfl_kd/report/ranked_worst.png",
        "vit_baseline/report/attention_maps.png",
        "ogfr/report/erased_tokens.png",
    )
    for picture in pictures:
        assert (tmp_path / "demo" / picture).stat().st_size > 1000, picture
        assert picture in report
    for m in demo.MODELS:
        run_report = (tmp_path / "demo" / m.key / "report" / "report.md").read_text()
        assert f"{m.key}/report/report.md" in report and "chance (random rankings)" in run_report
    # The last step: a 3-camera recording indexed with the OGFR model, and the command that browses it.
    from occreid.retrieval import load_index, search_by_track

    index = load_index(tmp_path / "demo" / "recording" / "tracks.npz")
    assert index.camera_names == ["cam1", "cam2", "cam3"] and index.meta["checkpoint"].endswith(
        "ogfr/last.pt"
    )
    assert search_by_track(index, "cam1", int(index.track[0]))["results"]
    out = capsys.readouterr().out
    assert f"occreid serve --index {tmp_path / 'demo' / 'recording' / 'tracks.npz'} --checkpoint" in out
