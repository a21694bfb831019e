"""Partial-Duke generation (PGFL-KD paper, section 4.1) on a tiny DukeMTMC-reID tree of real JPEGs."""

import csv
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from occreid.data.datasets import load_dataset
from occreid.data.partial_duke import MANIFEST_NAME, crop_height, make_partial_duke, plan_crops
from occreid.errors import OccreidError

SPLITS = {"bounding_box_train": 8, "query": 5, "bounding_box_test": 6}
RED, BLUE = (220, 20, 20), (20, 20, 220)


def make_duke(root: Path) -> Path:
    """Images of heights 29..36: the top third is red, the rest blue, so a crop's content is checkable."""
    duke = root / "DukeMTMC-reID"
    for split, n in SPLITS.items():
        (duke / split).mkdir(parents=True)
        for i in range(n):
            height, width = 29 + i, 12
            pixels = np.empty((height, width, 3), np.uint8)
            pixels[:] = BLUE
            pixels[: height // 3] = RED
            name = f"{(i % 3) + 1:04d}_c{(i % 8) + 1}_f{1000 + i:07d}.jpg"
            Image.fromarray(pixels).save(duke / split / name, quality=95)
    (duke / "CITATION_DukeMTMC.txt").write_text("not an image\n")
    return duke


def read_rows(out: Path) -> list[dict]:
    with (out / MANIFEST_NAME).open(newline="") as handle:
        return list(csv.DictReader(handle))


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_half_of_each_split_is_cropped_half_to_upper_half_half_to_upper_third(tmp_path):
    duke = make_duke(tmp_path)
    out = make_partial_duke(duke, tmp_path / "Partial-Duke", seed=0, progress=False)
    rows = read_rows(out)
    assert len(rows) == sum(SPLITS.values())
    per_split = {s: Counter(r["crop"] for r in rows if r["path"].startswith(s + "/")) for s in SPLITS}
    # n -> floor(n/2) partial; of those floor(.../2) upper half, the rest upper third
    assert per_split["bounding_box_train"] == {"none": 4, "upper_half": 2, "upper_third": 2}
    assert per_split["query"] == {"none": 3, "upper_half": 1, "upper_third": 1}
    assert per_split["bounding_box_test"] == {"none": 3, "upper_half": 1, "upper_third": 2}

    for row in rows:
        src, dst = duke / row["path"], out / row["path"]
        orig_h = Image.open(src).height
        with Image.open(dst) as image:
            width, height = image.size
            pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
        assert (int(row["orig_height"]), int(row["height"])) == (orig_h, height)
        assert width == 12
        if row["crop"] == "none":
            assert dst.read_bytes() == src.read_bytes()  # copied untouched
        else:
            expected = {"upper_half": orig_h // 2, "upper_third": orig_h // 3}[row["crop"]]
            assert height == expected
            # the kept rows are the top of the original: red throughout for the third, red on top for the half
            assert np.abs(pixels[0] - RED).mean() < 25
            if row["crop"] == "upper_third":
                assert np.abs(pixels[: height - 1] - RED).mean() < 25
            else:
                assert np.abs(pixels[-1] - BLUE).mean() < 25
    assert not (out / "CITATION_DukeMTMC.txt").exists()  # only images and the manifest


def test_same_seed_same_bytes_other_seed_other_selection(tmp_path):
    duke = make_duke(tmp_path)
    a = make_partial_duke(duke, tmp_path / "a", seed=0, progress=False)
    b = make_partial_duke(duke, tmp_path / "b", seed=0, progress=False)
    c = make_partial_duke(duke, tmp_path / "c", seed=1, progress=False)
    assert tree_bytes(a) == tree_bytes(b)
    crops_a = {r["path"]: r["crop"] for r in read_rows(a)}
    crops_c = {r["path"]: r["crop"] for r in read_rows(c)}
    assert crops_a.keys() == crops_c.keys()
    assert crops_a != crops_c
    assert Counter(crops_a.values()) == Counter(crops_c.values())  # same proportions, other images


def test_plan_at_full_duke_size():
    names = [f"{i:04d}_c1_f{i:07d}.jpg" for i in range(16522)]
    plan = plan_crops(names, "bounding_box_train", seed=0)
    assert Counter(plan.values()) == {"none": 8261, "upper_half": 4130, "upper_third": 4131}
    # the order files are listed in does not matter; each split draws its own selection
    assert plan == plan_crops(list(reversed(names)), "bounding_box_train", seed=0)
    assert plan != plan_crops(names, "query", seed=0)
    assert [crop_height(31, "upper_half"), crop_height(31, "upper_third"), crop_height(2, "upper_third")] == [
        15,
        10,
        1,
    ]


def test_loader_reads_the_output(tmp_path):
    duke = make_duke(tmp_path)
    out = make_partial_duke(duke, tmp_path / "Partial-Duke", seed=3, progress=False)
    crops = {r["path"]: r["crop"] for r in read_rows(out)}
    with pytest.warns(UserWarning, match=r"partial_duke .*train expected 702 ids/16522 images, found 3/8"):
        ds = load_dataset("partial_duke", tmp_path)  # parent of Partial-Duke/
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        original = load_dataset("dukemtmc", duke)
    for split in ("train", "query", "gallery"):
        got, ref = getattr(ds, split), getattr(original, split)
        assert [(Path(r.path).name, r.pid, r.camid) for r in got] == [
            (Path(r.path).name, r.pid, r.camid) for r in ref
        ]
        assert [r.occluded for r in got] == [crops[ds.relpath(r)] != "none" for r in got]
    assert sum(r.occluded for r in ds.train) == 4 and sum(r.occluded for r in ds.query) == 2


def test_errors(tmp_path):
    duke = make_duke(tmp_path)
    out = tmp_path / "taken"
    out.mkdir()
    (out / "something").write_text("x")
    with pytest.raises(OccreidError, match=r"--out .*taken already exists and is not empty"):
        make_partial_duke(duke, out, progress=False)
    with pytest.raises(OccreidError, match=r"must not be inside the DukeMTMC-reID folder"):
        make_partial_duke(duke, duke / "partial", progress=False)
    with pytest.raises(OccreidError, match=r"partial_duke\.csv not found.*make-partial-duke"):
        load_dataset("partial_duke", duke)
    (duke / "query" / "0001_c1_f0001000.jpg").rename(duke / "query" / "snapshot.jpg")
    with pytest.raises(OccreidError, match=r"snapshot\.jpg; expected <pid>_c<camera>"):
        make_partial_duke(duke, tmp_path / "new", progress=False)
    assert not (tmp_path / "new").exists()
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]  # no temporary leftovers


def test_cli_make_partial_duke(tmp_path):
    from occreid.cli import app

    duke = make_duke(tmp_path)
    result = CliRunner().invoke(
        app,
        ["data", "make-partial-duke", "--duke", str(tmp_path), "--out", str(tmp_path / "pd"), "--seed", "5"],
    )
    assert result.exit_code == 0, result.output
    assert "10 whole, 4 upper half, 5 upper third" in result.output
    assert tree_bytes(tmp_path / "pd") == tree_bytes(
        make_partial_duke(duke, tmp_path / "again", seed=5, progress=False)
    )


@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_unreadable_source_image_is_an_error_naming_it(tmp_path, damage):
    from occreid.cli import app

    duke = make_duke(tmp_path)
    names = sorted(p.name for p in (duke / "query").iterdir())
    plan = plan_crops(names, "query", seed=0)
    victim = duke / "query" / next(n for n in names if plan[n] != "none")  # decoded to be cropped
    data = victim.read_bytes()
    victim.write_bytes(b"" if damage == "empty" else data[: len(data) // 2])
    with pytest.raises(
        OccreidError, match=rf"cannot read image .*query/{victim.name} \(.*\); the file is corrupt"
    ):
        make_partial_duke(duke, tmp_path / "pd", seed=0, progress=False)
    assert not (tmp_path / "pd").exists()
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]

    result = CliRunner().invoke(
        app, ["data", "make-partial-duke", "--duke", str(duke), "--out", str(tmp_path / "pd")]
    )
    assert isinstance(result.exception, OccreidError) and victim.name in str(result.exception)
