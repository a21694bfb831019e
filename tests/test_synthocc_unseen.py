"""SynthOcc's unseen-occluder split (`occreid synth --train-occluders`): training images occluded only by the
chosen types, queries and gallery only by the others; recorded, summarised, and not reused by the demo."""

import json

import pytest
from typer.testing import CliRunner

from occreid.apps.demo.run import _reusable
from occreid.cli import app
from occreid.data.datasets import load_dataset
from occreid.data.synthocc import PRESETS, generate, plan_dataset
from occreid.data.synthocc.occluders import OCCLUDER_TYPES
from occreid.errors import OccreidError

SEEN = ("vehicle", "pole")
UNSEEN = ("board", "person", "clutter")


@pytest.fixture(scope="module")
def unseen(tmp_path_factory):
    root = tmp_path_factory.mktemp("unseen") / "synthocc"
    info = generate(
        root, preset="small", seed=1, workers=1, progress=False, train_occluders=["pole", "vehicle"]
    )
    return root, info


def test_no_training_image_has_a_query_type_and_vice_versa(unseen):
    root, info = unseen
    annotations = json.loads((root / "annotations.json").read_text())
    types = {
        split: {a["occluder_type"] for rel, a in annotations.items() if rel.startswith(d) and a["occluded"]}
        for split, d in (
            ("train", "bounding_box_train/"),
            ("query", "query/"),
            ("gallery", "bounding_box_test/"),
        )
    }
    assert types["train"] == set(SEEN)  # both seen types occur (48 occluded training images)
    assert types["query"] == set(UNSEEN) and types["gallery"] <= set(UNSEEN)
    # The records carry the types; every query is occluded by an unseen type.
    ds = load_dataset("synthocc", root)
    assert {r.occluder_type for r in ds.train} == {"none", *SEEN}
    assert {r.occluder_type for r in ds.query} == set(UNSEEN)
    assert (info["train_occluders"], info["test_occluders"]) == (list(SEEN), list(UNSEEN))
    assert json.loads((root / "synthocc.json").read_text())["train_occluders"] == list(SEEN)


def test_the_split_changes_only_the_occluder_types():
    _, plain = plan_dataset(PRESETS["small"], 1, "occluded")
    _, split = plan_dataset(PRESETS["small"], 1, "occluded", train_occluders=SEEN)
    assert [(s.split, s.pid, s.camid, s.occluded) for s in plain] == [
        (s.split, s.pid, s.camid, s.occluded) for s in split
    ]
    assert {s.occluder_kinds for s in plain} == {OCCLUDER_TYPES}
    assert {s.occluder_kinds for s in split if s.split == "train"} == {SEEN}
    assert {s.occluder_kinds for s in split if s.split != "train"} == {UNSEEN}


@pytest.mark.parametrize(
    "kinds, protocol, message",
    [
        (["car"], "occluded", "--train-occluders"),
        (list(OCCLUDER_TYPES), "occluded", "some but not all"),
        ([], "occluded", "--train-occluders"),
        (["pole"], "partial", "--protocol occluded"),
    ],
)
def test_bad_train_occluders_are_one_clear_error_before_anything_is_written(
    tmp_path, kinds, protocol, message
):
    with pytest.raises(OccreidError, match=message):
        generate(tmp_path / "out", preset="small", protocol=protocol, progress=False, train_occluders=kinds)
    assert not (tmp_path / "out").exists()


def test_summary_shows_the_split_and_the_demo_does_not_reuse_it(unseen, tmp_path):
    root, _ = unseen
    result = CliRunner().invoke(app, ["data", "summary", "synthocc", "--root", str(root)])
    assert result.exit_code == 0, result.output
    assert "unseen occluders: training vehicle/pole, query and gallery board/person/clutter" in result.output
    query_line = next(
        line for line in result.output.splitlines() if line.strip().startswith("query") and "types" in line
    )
    assert "vehicle" not in query_line and "pole" not in query_line
    # The demo reuses a SynthOcc only with its own settings: never an unseen-occluder split.
    meta = json.loads((root / "synthocc.json").read_text())
    demo_root = tmp_path / "demo"
    demo_root.mkdir()
    meta.update(preset="default", seed=1)
    (demo_root / "synthocc.json").write_text(json.dumps(meta))
    assert not _reusable(demo_root, 1)
    meta.update(train_occluders=None, test_occluders=None)
    (demo_root / "synthocc.json").write_text(json.dumps(meta))
    assert _reusable(demo_root, 1)
    del meta["train_occluders"]  # written before the split existed
    (demo_root / "synthocc.json").write_text(json.dumps(meta))
    assert _reusable(demo_root, 1) and not _reusable(demo_root, 2)
