"""Files that earlier occreid versions wrote keep working: checkpoints, run folders (their config.yaml),
indexes.

tests/fixtures/legacy/ holds such files, written by the code before the package took its current layout (its
README says how; they are never regenerated). Each is used here the way a user would: eval, export, index add,
search and --resume, and the configs every method stored."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from occreid.cli import app
from occreid.config import MOVED_KEYS, load_config
from occreid.methods import build_model
from occreid.modeling.checkpoint import FORMAT, checkpoint_config, load_checkpoint

LEGACY = Path(__file__).parent / "fixtures" / "legacy"
RUN = LEGACY / "run_vit_tiny"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    """The SynthOcc the legacy run trained on (small preset, seed 0: the same images byte for byte)."""
    from occreid.data.synthocc import generate

    root = tmp_path_factory.mktemp("legacy") / "synthocc"
    generate(root, preset="small", seed=0, protocol="occluded")
    return root


def run(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize("key", ["baseline", "pgfl_kd", "vit_baseline", "ogfr"])
def test_every_methods_stored_config_loads_and_builds_the_stored_weights_names(key):
    stored = json.loads((LEGACY / f"{key}.json").read_text())
    cfg = checkpoint_config({"config": stored["config"]}, f"{key}.json")
    for old, new in MOVED_KEYS.items():  # the old keys' values, in their new places
        (section, name), (new_section, new_name) = old.split("."), new.split(".")
        assert getattr(getattr(cfg, new_section), new_name) == stored["config"][section][name]
    cfg.model.pretrained = False
    method = build_model(cfg, num_classes=stored["num_classes"])
    shapes = {k: list(v.shape) for k, v in method.state_dict().items()}
    assert shapes == stored["state_shapes"]  # so load_weights takes the old checkpoints as they are


def test_an_old_pgfl_kd_checkpoint_evaluates_with_its_switches(tmp_path):
    """A checkpoint whose config has PGFL-KD's switches under model.* and loss.*: the switches still apply."""
    from occreid.inference.models import load_method

    stored = json.loads((LEGACY / "pgfl_kd.json").read_text())
    config = json.loads(json.dumps(stored["config"]))
    config["model"].update(pretrained=False, feb=False)  # a run without FEB, as Table 6 row 4 trained
    cfg = checkpoint_config({"config": config})
    weights = build_model(cfg, num_classes=stored["num_classes"]).state_dict()
    torch.save(
        {"format": FORMAT, "model": weights, "config": config, "num_classes": stored["num_classes"]},
        tmp_path / "old.pt",
    )
    method, loaded = load_method(tmp_path / "old.pt")
    assert loaded.pgfl_kd.feb is False and not hasattr(method, "feb") and hasattr(method, "sab")


def test_a_run_folders_config_yaml_still_trains_with_a_warning(capsys):
    cfg = load_config(LEGACY / "pgfl_kd_config.yaml")
    err = capsys.readouterr().err
    assert "model.sab -> pgfl_kd.sab" in err and "loss.lambda_cl -> pgfl_kd.lambda_cl" in err
    assert err.count("\n") == 1  # one line
    assert cfg.model.name == "pgfl_kd" and cfg.pgfl_kd.lambda_cl == 0.25 and cfg.pgfl_kd.sab is True


def test_eval_and_export_of_an_old_checkpoint(synth_root, tmp_path):
    run(
        "eval",
        "--checkpoint",
        str(RUN / "last.pt"),
        "--root",
        str(synth_root),
        "--out",
        str(tmp_path / "e.json"),
    )
    recorded = json.loads((RUN / "eval.json").read_text())
    assert json.loads((tmp_path / "e.json").read_text())["metrics"]["mAP"] == pytest.approx(
        recorded["mAP"], abs=1e-12
    )
    run("export", "--checkpoint", str(RUN / "last.pt"), "--out", str(tmp_path / "model.onnx"))
    assert (tmp_path / "model.onnx").stat().st_size > 100_000


def test_search_and_index_add_on_an_old_index(tmp_path):
    ckpt = str(RUN / "last.pt")
    for line in (LEGACY / "search_expected.jsonl").read_text().splitlines():
        expected = json.loads(line)
        query = str(LEGACY.parents[2] / expected["query"])
        args = ["--image", query, "--topk", "12", "--device", "cpu", "--json", "--checkpoint", ckpt]
        result = CliRunner().invoke(app, ["search", "--index", str(LEGACY / "index.npz"), *args])
        assert result.exit_code == 0 and "older, bilinear resize" in result.stderr
        got = json.loads(result.stdout)
        # Queries are now resized bicubically, as training and `eval` resize (the index's rows were embedded
        # with bilinear resizing), so each gallery image's distance moves by a few hundredths and close
        # neighbours may swap. (--topk 12 is the whole gallery.)
        expected_distance = {r["path"]: r["distance"] for r in expected["results"]}
        assert sorted(r["path"] for r in got["results"]) == sorted(expected_distance)
        assert [r["distance"] for r in got["results"]] == pytest.approx(
            [expected_distance[r["path"]] for r in got["results"]], abs=0.05
        )
    index = tmp_path / "index.npz"
    shutil.copy(LEGACY / "index.npz", index)
    run(
        "index",
        "add",
        "--index",
        str(index),
        "--images",
        str(LEGACY / "query"),
        "--checkpoint",
        ckpt,
        "--device",
        "cpu",
    )
    from occreid.evaluation import GalleryIndex

    assert len(GalleryIndex.load(index)) == 14


def test_resume_auto_continues_an_old_run_folder(synth_root, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(RUN, folder)
    before = load_checkpoint(folder / "last.pt")
    sets = ["--set", f"data.root={synth_root}", "--set", "train.epochs=3"]
    run("train", "-c", str(folder / "config.yaml"), "--resume", "auto", "--output-dir", str(folder), *sets)
    after = load_checkpoint(folder / "last.pt")
    assert (before["epoch"], after["epoch"]) == (2, 3) and after["step"] == before["step"] + 2
