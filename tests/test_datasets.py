"""Dataset loaders on tiny trees of empty files named like the real datasets."""

import json
import warnings
from pathlib import Path

import pytest
from typer.testing import CliRunner

from occreid.data.datasets import DATASET_NAMES, common, load_dataset
from occreid.errors import OccreidError


def touch(folder: Path, *names: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"")


def load_quiet(name, root, **kwargs):
    """Load a tiny tree: the published-statistics warning is expected there and silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_dataset(name, root, **kwargs)


def key(records):
    return [(Path(r.path).name, r.pid, r.camid, r.occluded) for r in records]


# --------------------------------------------------------------------------------------------- Market-1501


def make_market(root: Path) -> Path:
    ds = root / "Market-1501-v15.09.15"
    touch(
        ds / "bounding_box_train",
        "1500_c6s3_086542_02.jpg",
        "0002_c1s1_000451_03.jpg",
        "0007_c3s1_000100_00.jpg",
        "0002_c2s1_000551_01.jpg",
        "Thumbs.db",  # shipped in the real archive; not an image
    )
    touch(ds / "query", "0007_c4s1_000200_00.jpg", "0002_c1s1_001051_00.jpg")
    touch(
        ds / "bounding_box_test",
        "-1_c1s1_000401_03.jpg",  # junk
        "0000_c1s1_000151_01.jpg",  # distractor
        "0002_c5s1_000300_01.jpg",
        "0007_c6s1_000400_01.jpg",
        "-1_c3s1_000402_03.jpg",  # junk
    )
    return ds


def test_market1501_parsing_relabelling_junk_and_distractors(tmp_path):
    ds_dir = make_market(tmp_path)
    with pytest.warns(UserWarning, match=r"market1501 .*train expected 751 ids/12936 images, found 3/4"):
        ds = load_dataset("market1501", ds_dir)
    assert ds.root == ds_dir.resolve()
    # train sorted by path, pids 2, 7, 1500 relabelled to 0, 1, 2; camid = c - 1
    assert key(ds.train) == [
        ("0002_c1s1_000451_03.jpg", 0, 0, None),
        ("0002_c2s1_000551_01.jpg", 0, 1, None),
        ("0007_c3s1_000100_00.jpg", 1, 2, None),
        ("1500_c6s3_086542_02.jpg", 2, 5, None),
    ]
    assert key(ds.query) == [("0002_c1s1_001051_00.jpg", 2, 0, None), ("0007_c4s1_000200_00.jpg", 7, 3, None)]
    # junk (-1) dropped, distractors (0) kept with their pid
    assert key(ds.gallery) == [
        ("0000_c1s1_000151_01.jpg", 0, 0, None),
        ("0002_c5s1_000300_01.jpg", 2, 4, None),
        ("0007_c6s1_000400_01.jpg", 7, 5, None),
    ]
    assert all(
        Path(r.path).is_absolute() and Path(r.path).is_file() for r in ds.train + ds.query + ds.gallery
    )
    assert ds.relpath(ds.query[0]) == "query/0002_c1s1_001051_00.jpg"
    assert ds.split_stats() == {"train": (3, 4, 4), "query": (2, 2, 2), "gallery": (3, 3, 3)}


def test_market1501_accepts_the_parent_folder(tmp_path):
    ds_dir = make_market(tmp_path)
    a = load_quiet("market1501", tmp_path)
    b = load_quiet("market1501", ds_dir)
    assert a.root == b.root == ds_dir.resolve()
    assert a.train == b.train and a.gallery == b.gallery


def test_stats_check_is_one_warning_and_silent_when_counts_match(tmp_path, monkeypatch):
    ds_dir = make_market(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_dataset("market1501", ds_dir)
    assert len(caught) == 1  # all splits in one message, not one per split
    message = str(caught[0].message)
    assert "query expected 750 ids/3368 images, found 2/2" in message
    assert "gallery expected 751 ids/15913 images, found 3/3" in message  # junk excluded, pid 0 counted
    # With the tiny tree's own numbers as the "published" ones, nothing is reported: the convention is
    # ids/images after dropping junk, distractor pid 0 counted, train counted before relabelling.
    monkeypatch.setitem(
        common.KNOWN_STATS, "market1501", {"train": (3, 4), "query": (2, 2), "gallery": (3, 3)}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_dataset("market1501", ds_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        monkeypatch.setitem(common.KNOWN_STATS, "market1501", {"train": (751, 12936)})
        load_dataset("market1501", ds_dir, check_stats=False)


def test_market1501_errors_name_the_path(tmp_path):
    ds_dir = make_market(tmp_path)
    for f in (ds_dir / "query").iterdir():
        f.unlink()
    with pytest.raises(OccreidError, match=r"query holds no images"):
        load_quiet("market1501", ds_dir)
    (ds_dir / "query").rmdir()
    with pytest.raises(OccreidError, match=r"missing the folder\(s\) query/"):
        load_quiet("market1501", ds_dir)
    with pytest.raises(OccreidError, match=r"does not exist"):
        load_quiet("market1501", tmp_path / "nope")
    touch(ds_dir / "query", "0002_c1s1_001051_00.jpg", "IMG_0042.jpg")
    with pytest.raises(OccreidError, match=r"IMG_0042\.jpg.*expected <pid>_c<camera>"):
        load_quiet("market1501", ds_dir)


def test_unknown_dataset_and_option():
    assert len(DATASET_NAMES) == 10 and "partial_duke" in DATASET_NAMES
    with pytest.raises(OccreidError, match=r"unknown dataset 'market'.*market1501, dukemtmc, .*folder"):
        load_dataset("market", "/tmp")
    with pytest.raises(OccreidError, match=r"dataset market1501: unknown option\(s\) csv"):
        load_dataset("market1501", "/tmp", csv="x.csv")


# ------------------------------------------------------------------------------------ Duke family


def make_duke(folder: Path) -> Path:
    touch(
        folder / "bounding_box_train", "0005_c2_f0046985.jpg", "0005_c8_f0046999.jpg", "0001_c1_f0000001.jpg"
    )
    touch(folder / "query", "0005_c5_f0051341.jpg")
    touch(
        folder / "bounding_box_test", "0005_c3_f0060000.jpg", "0002_c1_f0044158.jpg", "0009_c7_f0000009.jpg"
    )
    return folder


def test_dukemtmc(tmp_path):
    make_duke(tmp_path / "DukeMTMC-reID")
    with pytest.warns(UserWarning, match=r"dukemtmc .*gallery expected 1110 ids/17661 images, found 3/3"):
        ds = load_dataset("dukemtmc", tmp_path)  # parent of DukeMTMC-reID/
    assert ds.root == (tmp_path / "DukeMTMC-reID").resolve()
    assert key(ds.train) == [
        ("0001_c1_f0000001.jpg", 0, 0, None),
        ("0005_c2_f0046985.jpg", 1, 1, None),
        ("0005_c8_f0046999.jpg", 1, 7, None),  # 8 cameras: c8 -> camid 7
    ]
    assert key(ds.query) == [("0005_c5_f0051341.jpg", 5, 4, None)]
    assert [r.pid for r in ds.gallery] == [2, 5, 9]


def test_occluded_duke_marks_query_occluded(tmp_path):
    make_duke(tmp_path / "Occluded_Duke")
    with pytest.warns(UserWarning, match=r"occluded_duke .*query expected 519 ids/2210 images, found 1/1"):
        ds = load_dataset("occluded_duke", tmp_path)
    assert [r.occluded for r in ds.query] == [True]
    assert {r.occluded for r in ds.train + ds.gallery} == {None}
    assert ds.num_train_pids == 2


def test_p_dukemtmc_split_camids_by_default_and_duke_cameras_on_request(tmp_path):
    root = tmp_path / "P-DukeMTMC-reID"
    touch(root / "train/whole_body_images", "0007/0007_c1_f0000100.jpg", "0003/0003_c2_f0000200.jpg")
    touch(root / "train/occluded_body_images", "0007/0007_c4_f0000300.jpg")
    touch(root / "test/occluded_body_images", "0100/0100_c5_f0000400.jpg")
    touch(root / "test/whole_body_images", "0100/0100_c6_f0000500.jpg", "0101/0101_c2_f0000600.jpg")
    with pytest.warns(UserWarning, match=r"p_dukemtmc .*all expected 1299 ids/24143 images, found 4/6"):
        ds = load_dataset("p_dukemtmc", tmp_path)
    # the published convention (PVPM, BPBreID): occluded camid 0, whole-body camid 1, in train too
    assert key(ds.train) == [
        ("0007_c4_f0000300.jpg", 1, 0, True),  # occluded_body_images sorts first
        ("0003_c2_f0000200.jpg", 0, 1, False),
        ("0007_c1_f0000100.jpg", 1, 1, False),
    ]
    assert key(ds.query) == [("0100_c5_f0000400.jpg", 100, 0, True)]
    assert [(r.pid, r.camid) for r in ds.gallery] == [(100, 1), (101, 1)]
    # DukeMTMC cameras from the names on request: same-camera gallery images are then filtered
    names = load_quiet("p_dukemtmc", root, camids="names")
    assert [r.camid for r in names.train] == [3, 1, 0] and [r.camid for r in names.query] == [4]
    assert [r.camid for r in names.gallery] == [5, 1]
    with pytest.raises(OccreidError, match="camids must be split or names"):
        load_quiet("p_dukemtmc", root, camids="auto")


def test_p_dukemtmc_without_camera_names(tmp_path):
    root = tmp_path / "pd"
    touch(root / "train/whole_body_images", "0007/0007_01.jpg")
    touch(root / "test/occluded_body_images", "0100/0100_01.jpg", "0100/0100_02.jpg")
    touch(root / "test/whole_body_images", "0100/0100_03.jpg")
    ds = load_quiet("p_dukemtmc", root)
    assert [(r.pid, r.camid) for r in ds.query] == [(100, 0), (100, 0)]
    assert [(r.pid, r.camid) for r in ds.gallery] == [(100, 1)]
    assert [(r.pid, r.camid, r.occluded) for r in ds.train] == [(0, 1, False)]
    with pytest.raises(OccreidError, match=r"0007_01\.jpg.*camids='split'"):
        load_quiet("p_dukemtmc", root, camids="names")
    touch(root / "test/whole_body_images", "stray.jpg")  # not inside a person folder
    with pytest.raises(OccreidError, match=r"stray\.jpg must sit in a person folder"):
        load_quiet("p_dukemtmc", root)


# ------------------------------------------------------------------------ single-camera test-only sets


def test_occluded_reid_single_camera_protocol(tmp_path):
    root = tmp_path / "Occluded_REID"
    touch(root / "occluded_body_images", "001/001_01.tif", "001/001_02.tif", "012/012_01.tif")
    touch(root / "whole_body_images", "001/001_01.tif", "012/012_01.tif", "012/012_02.tif")
    with pytest.warns(UserWarning, match=r"occluded_reid .*query expected 200 ids/1000 images, found 2/3"):
        ds = load_dataset("occluded_reid", tmp_path)
    assert ds.train == []
    assert [(r.pid, r.camid, r.occluded) for r in ds.query] == [(1, 0, True), (1, 0, True), (12, 0, True)]
    assert [(r.pid, r.camid, r.occluded) for r in ds.gallery] == [
        (1, 1, False),
        (12, 1, False),
        (12, 1, False),
    ]
    assert ds.relpath(ds.query[2]) == "occluded_body_images/012/012_01.tif"


def test_occluded_reid_pid_comes_from_the_person_folder(tmp_path):
    root = tmp_path / "occ"
    touch(root / "occluded_body_images", "005/IMG_1.tif")  # name carries no id; the folder does
    touch(root / "whole_body_images", "005/005_01.tif")
    ds = load_quiet("occluded_reid", root)
    assert [r.pid for r in ds.query] == [5]
    touch(root / "whole_body_images", "person_x/001.tif")
    with pytest.raises(OccreidError, match=r"person folder .*person_x must be named by the person id"):
        load_quiet("occluded_reid", root)


def test_partial_reid_uses_partial_body_images(tmp_path):
    root = tmp_path / "Partial-REID_Dataset"
    touch(root / "partial_body_images", "001_001.jpg", "001_002.jpg", "060_005.jpg")
    touch(root / "occluded_body_images", "001_001.jpg")  # uncropped originals: not part of the protocol
    touch(root / "whole_body_images", "001_001.jpg", "060_001.jpg")
    ds = load_quiet("partial_reid", tmp_path)
    assert [(r.pid, r.camid, r.occluded) for r in ds.query] == [(1, 0, True), (1, 0, True), (60, 0, True)]
    assert all("partial_body_images" in r.path for r in ds.query)
    assert [(r.pid, r.camid, r.occluded) for r in ds.gallery] == [(1, 1, False), (60, 1, False)]
    touch(root / "whole_body_images", "readme_image.jpg")
    with pytest.raises(OccreidError, match=r"readme_image\.jpg; expected a name starting with the id"):
        load_quiet("partial_reid", tmp_path)


@pytest.mark.parametrize(
    "query_dir, gallery_dir",
    [("Probe", "Gallery"), ("probe", "gallery"), ("partial_body_images", "whole_body_images")],
)
def test_partial_ilids_folder_variants(tmp_path, query_dir, gallery_dir):
    root = tmp_path / "Partial_iLIDS"
    touch(root / query_dir, "001.jpg", "002.jpg", "119.jpg")
    touch(root / gallery_dir, "001.jpg", "002.jpg", "119.jpg")
    with pytest.warns(UserWarning, match=r"partial_ilids .*query expected 119 ids/119 images, found 3/3"):
        ds = load_dataset("partial_ilids", root)
    assert [(r.pid, r.camid, r.occluded) for r in ds.query] == [(1, 0, True), (2, 0, True), (119, 0, True)]
    assert [(r.pid, r.camid) for r in ds.gallery] == [(1, 1), (2, 1), (119, 1)]
    assert ds.train == []


def test_single_camera_errors(tmp_path):
    root = tmp_path / "Partial_iLIDS"
    touch(root / "Probe", "001.jpg")
    with pytest.raises(OccreidError, match=r"missing the folder\(s\) Gallery\|gallery\|whole_body_images/"):
        load_quiet("partial_ilids", tmp_path)
    (root / "Gallery").mkdir()
    with pytest.raises(OccreidError, match=r"Gallery holds no images"):
        load_quiet("partial_ilids", tmp_path)


# ----------------------------------------------------------------------------------- synthocc, folder


def test_synthocc_reads_occlusion_annotations_without_stats_warning(tmp_path):
    root = tmp_path / "synth"
    touch(root / "bounding_box_train", "0001_c1s1_000001_00.jpg", "0003_c2s1_000002_00.jpg")
    touch(root / "query", "0010_c1s1_000003_00.jpg")
    touch(root / "bounding_box_test", "0010_c2s1_000004_00.jpg", "0011_c3s1_000005_00.jpg")
    notes = {
        "query/0010_c1s1_000003_00.jpg": {"occluded": True, "occluder": "car"},
        "bounding_box_test/0010_c2s1_000004_00.jpg": {"occluded": False},
        "bounding_box_train/0003_c2s1_000002_00.jpg": {"occluded": True},
    }
    (root / "annotations.json").write_text(json.dumps(notes))
    (root / "synthocc.json").write_text("{}")  # the generator's completion marker
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = load_dataset("synthocc", root)
    assert key(ds.train) == [("0001_c1s1_000001_00.jpg", 0, 0, None), ("0003_c2s1_000002_00.jpg", 1, 1, True)]
    assert [r.occluded for r in ds.query] == [True]
    assert [r.occluded for r in ds.gallery] == [False, None]
    (root / "annotations.json").write_text("{not json")
    with pytest.raises(OccreidError, match=r"annotations\.json is not valid JSON"):
        load_dataset("synthocc", root)


def test_synthocc_without_its_completion_marker_is_refused(tmp_path):
    root = tmp_path / "synthocc"
    touch(root / "bounding_box_train", "0001_c1s1_000001_00.jpg")
    touch(root / "query", "0010_c1s1_000003_00.jpg")
    touch(root / "bounding_box_test", "0010_c2s1_000004_00.jpg")
    (root / "annotations.json").write_text("{}")
    with pytest.raises(
        OccreidError, match=r"synthocc: .*synthocc has no synthocc\.json.*incomplete.*occreid synth --out"
    ):
        load_dataset("synthocc", tmp_path)  # the parent: the message names the dataset folder found in it
    (root / "synthocc.json").write_text("{}")
    assert len(load_dataset("synthocc", tmp_path).train) == 1


def test_folder_market_style_with_train_and_gallery_names(tmp_path):
    root = tmp_path / "mine"
    touch(root / "train", "0042_c12_a.jpg", "0040_c1_b.png")
    touch(root / "gallery", "0007_c3_x.jpg")
    ds = load_dataset("folder", root)
    assert key(ds.train) == [("0040_c1_b.png", 0, 0, None), ("0042_c12_a.jpg", 1, 11, None)]
    assert ds.query == [] and [(r.pid, r.camid) for r in ds.gallery] == [(7, 2)]
    with pytest.raises(OccreidError, match=r"has none of the split folders .*--csv"):
        load_dataset("folder", tmp_path)  # holds only mine/, no split folder


def test_folder_csv(tmp_path):
    touch(tmp_path / "imgs", "a.jpg", "b.jpg", "c.jpg", "d.jpg")
    (tmp_path / "list.csv").write_text(
        "path,pid,camid,split,occluded\n"
        "imgs/a.jpg,7,0,query,1\n"
        "imgs/b.jpg,7,1,gallery,0\n"
        "imgs/c.jpg,30,2\n"  # no split -> train
        f"{tmp_path / 'imgs' / 'd.jpg'},10,1,train,\n"
    )
    ds = load_dataset("folder", tmp_path / "list.csv")
    assert ds.root == tmp_path.resolve()
    assert key(ds.query) == [("a.jpg", 7, 0, True)]
    assert key(ds.gallery) == [("b.jpg", 7, 1, False)]
    assert key(ds.train) == [("c.jpg", 1, 2, None), ("d.jpg", 0, 1, None)]  # relabelled: 10 -> 0, 30 -> 1
    assert ds.relpath(ds.query[0]) == "imgs/a.jpg"
    # the same file through csv= (the CLI's --csv); no header row this time
    (tmp_path / "nohead.csv").write_text("imgs/a.jpg,7,0,query\n")
    assert key(load_dataset("folder", tmp_path, csv=tmp_path / "nohead.csv").query) == [("a.jpg", 7, 0, None)]


def test_folder_csv_paths_resolve_against_root_when_given_else_the_csv_folder(tmp_path):
    touch(tmp_path / "images" / "cam1", "a.jpg")
    touch(tmp_path / "lists" / "cam1", "a.jpg")  # the same name next to the CSV: which one is read tells
    csv_file = tmp_path / "lists" / "mine.csv"
    csv_file.write_text("cam1/a.jpg,7,0,query\n")
    with_root = load_dataset("folder", tmp_path / "images", csv=csv_file)
    assert [r.path for r in with_root.query] == [str((tmp_path / "images/cam1/a.jpg").resolve())]
    assert (
        with_root.root == (tmp_path / "images").resolve()
        and with_root.relpath(with_root.query[0]) == "cam1/a.jpg"
    )
    without_root = load_dataset("folder", None, csv=csv_file)
    assert [r.path for r in without_root.query] == [str((tmp_path / "lists/cam1/a.jpg").resolve())]
    assert without_root.root == (tmp_path / "lists").resolve()
    (tmp_path / "images/cam1/a.jpg").unlink()
    with pytest.raises(OccreidError, match=r"do not exist \(relative paths are resolved against .*images\)"):
        load_dataset("folder", tmp_path / "images", csv=csv_file)
    with pytest.raises(OccreidError, match=r"--root .*nowhere is not a folder; with --csv"):
        load_dataset("folder", tmp_path / "nowhere", csv=csv_file)
    with pytest.raises(OccreidError, match=r"dataset market1501: no root given"):
        load_dataset("market1501", None)


def test_cli_folder_csv_with_and_without_root(tmp_path):
    from occreid.cli import app

    touch(tmp_path / "images", "cam1/a.jpg", "cam2/b.jpg")
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "mine.csv").write_text("cam1/a.jpg,7,0,query\ncam2/b.jpg,7,1,gallery\n")
    args = ["data", "summary", "folder", "--csv", str(tmp_path / "lists" / "mine.csv")]
    result = CliRunner().invoke(app, args + ["--root", str(tmp_path / "images")])
    assert result.exit_code == 0, result.output
    assert f"Dataset folder at {(tmp_path / 'images').resolve()}" in result.output
    missing = CliRunner().invoke(app, args)  # without --root: lists/cam1/a.jpg, which does not exist
    assert isinstance(missing.exception, OccreidError)
    assert "2 image(s) listed" in str(missing.exception) and str((tmp_path / "lists").resolve()) in str(
        missing.exception
    )
    no_root = CliRunner().invoke(app, ["data", "summary", "market1501"])
    assert isinstance(no_root.exception, OccreidError) and "--root is required" in str(no_root.exception)


@pytest.mark.parametrize(
    "row, message",
    [
        ("imgs/a.jpg,7,0,probe", r"line 1: split must be train, query or gallery, got 'probe'"),
        ("imgs/a.jpg,7,zero", r"line 1: camid must be an integer \(or empty: no camera\), got .zero."),
        ("imgs/a.jpg,,0", r"line 1: the pid \(second column\) is empty"),
        ("imgs/a.jpg,7", r"line 1 has 2 columns; expected path,pid,camid"),
        (
            "imgs/missing.jpg,7,0",
            r"1 image\(s\) listed in .*bad\.csv do not exist \(relative .*\): .*missing\.jpg",
        ),
        ("imgs/a.jpg,7,0,query,maybe", r"occluded must be 1/0/true/false or empty"),
    ],
)
def test_folder_csv_errors(tmp_path, row, message):
    touch(tmp_path / "imgs", "a.jpg")
    (tmp_path / "bad.csv").write_text(row + "\n")
    with pytest.raises(OccreidError, match=message):
        load_dataset("folder", tmp_path / "bad.csv")


# ------------------------------------------------------------------------------------------------- CLI


def test_cli_data_summary(tmp_path):
    from occreid.cli import app

    root = tmp_path / "Occluded_REID"
    touch(root / "occluded_body_images", "001/001_01.tif", "002/002_01.tif", "002/002_02.tif")
    touch(root / "whole_body_images", "001/001_01.tif", "002/002_01.tif")
    result = CliRunner().invoke(app, ["data", "summary", "occluded_reid", "--root", str(tmp_path)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    rows = [[cell.strip() for cell in line.split("|")] for line in lines if "|" in line]
    assert (
        ["query", "2", "3", "1"] in rows
        and ["gallery", "2", "2", "1"] in rows
        and ["train", "0", "0", "0"] in rows
    )
    assert "  query     occluded: 3 of 3 images" in lines
    assert "  gallery   occluded: 0 of 2 images" in lines
    assert "query expected 200 ids/1000 images, found 2/3" in result.output  # the stats warning is shown

    listed = CliRunner().invoke(app, ["data", "list"])
    assert listed.exit_code == 0
    assert [line.split()[0] for line in listed.output.splitlines()] == list(DATASET_NAMES)


def _p_duke(root: Path) -> Path:
    touch(root / "train/whole_body_images", "0007/0007_c1_f0000100.jpg", "0003/0003_c2_f0000200.jpg")
    touch(root / "train/occluded_body_images", "0007/0007_c4_f0000300.jpg")
    touch(root / "test/occluded_body_images", "0100/0100_c5_f0000400.jpg")
    touch(root / "test/whole_body_images", "0100/0100_c6_f0000500.jpg", "0101/0101_c2_f0000600.jpg")
    return root


def _ilids(root: Path) -> Path:
    touch(root / "Probe", "001.jpg", "002.jpg", "119.jpg")
    touch(root / "Gallery", "001.jpg", "002.jpg")
    return root


def _partial_reid(root: Path) -> None:
    touch(root / "partial_body_images", "001_001.jpg", "001_002.jpg", "060_005.jpg")
    touch(root / "occluded_body_images", "001_001.jpg")  # not part of the protocol: not counted
    touch(root / "whole_body_images", "001_001.jpg", "060_001.jpg", "060_002.jpg")


def _partial_duke(root: Path) -> None:
    make_duke(root)  # train 0005_c2, 0005_c8, 0001_c1; query 0005_c5; gallery 0005_c3, 0002_c1, 0009_c7
    crops = {
        "bounding_box_train/0005_c2_f0046985.jpg": "upper_half",
        "query/0005_c5_f0051341.jpg": "upper_third",
        "bounding_box_test/0002_c1_f0044158.jpg": "upper_half",
    }
    rows = [
        f"{p.relative_to(root).as_posix()},{crops.get(p.relative_to(root).as_posix(), 'none')},30,30"
        for p in sorted(root.rglob("*.jpg"))
    ]
    (root / "partial_duke.csv").write_text("path,crop,orig_height,height\n" + "\n".join(rows) + "\n")


def _folder_market(root: Path) -> None:
    touch(root / "train", "0042_c12_a.jpg", "0040_c1_b.png", "0040_c2_c.jpg")
    touch(root / "query", "0007_c1_q.jpg")
    touch(root / "gallery", "0007_c3_x.jpg", "0008_c3_y.jpg", "-1_c2_junk.jpg")  # junk dropped


def _folder_csv(root: Path) -> list[str]:
    touch(root / "imgs", "a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg")
    (root / "list.csv").write_text(
        "path,pid,camid,split,occluded\n"
        "imgs/a.jpg,7,0,query,1\nimgs/b.jpg,7,1,gallery,0\nimgs/e.jpg,8,3,gallery,\n"
        "imgs/c.jpg,30,2,,\nimgs/d.jpg,10,1,train,\n"
    )
    return ["--root", str(root / "list.csv")]


def _folder_csv_option(root: Path) -> list[str]:
    touch(root / "images", "cam1/a.jpg", "cam2/b.jpg", "cam2/c.jpg")
    (root / "lists").mkdir()
    (root / "lists" / "mine.csv").write_text(
        "cam1/a.jpg,3,0,query,true\ncam2/b.jpg,3,1,gallery\ncam2/c.jpg,4,1,gallery\n"
    )
    return ["--csv", str(root / "lists" / "mine.csv"), "--root", str(root / "images")]


# (name, tree builder, expected rows: split -> (ids, images, cameras), expected "occluded" lines: split ->
# (occluded, images, unknown)); the counts are read off the trees above. A builder may return the CLI options
# to pass (default: --root <its folder>).
SUMMARY_CASES = [
    ("market1501", make_market, {"train": (3, 4, 4), "query": (2, 2, 2), "gallery": (3, 3, 3)}, {}),
    (
        "dukemtmc",
        lambda r: make_duke(r / "DukeMTMC-reID"),
        {"train": (2, 3, 3), "query": (1, 1, 1), "gallery": (3, 3, 3)},
        {},
    ),
    (
        "occluded_duke",
        lambda r: make_duke(r / "Occluded_Duke"),
        {"train": (2, 3, 3), "query": (1, 1, 1), "gallery": (3, 3, 3)},
        {"query": (1, 1, 0)},
    ),
    (
        "p_dukemtmc",
        lambda r: _p_duke(r / "P-DukeMTMC-reID"),
        {"train": (2, 3, 2), "query": (1, 1, 1), "gallery": (2, 2, 1)},
        {"train": (1, 3, 0), "query": (1, 1, 0), "gallery": (0, 2, 0)},
    ),
    (
        "partial_ilids",
        lambda r: _ilids(r / "Partial_iLIDS"),
        {"train": (0, 0, 0), "query": (3, 3, 1), "gallery": (2, 2, 1)},
        {"query": (3, 3, 0), "gallery": (0, 2, 0)},
    ),
    (
        "partial_reid",
        lambda r: _partial_reid(r / "Partial-REID_Dataset"),
        {"train": (0, 0, 0), "query": (2, 3, 1), "gallery": (2, 3, 1)},
        {"query": (3, 3, 0), "gallery": (0, 3, 0)},
    ),
    (
        "partial_duke",
        lambda r: _partial_duke(r / "Partial-Duke"),
        {"train": (2, 3, 3), "query": (1, 1, 1), "gallery": (3, 3, 3)},
        {"train": (1, 3, 0), "query": (1, 1, 0), "gallery": (1, 3, 0)},
    ),
    ("folder", _folder_market, {"train": (2, 3, 3), "query": (1, 1, 1), "gallery": (2, 2, 1)}, {}),
    (
        "folder",
        _folder_csv,
        {"train": (2, 2, 2), "query": (1, 1, 1), "gallery": (2, 2, 2)},
        {"query": (1, 1, 0), "gallery": (0, 2, 1)},
    ),
    (
        "folder",
        _folder_csv_option,
        {"train": (0, 0, 0), "query": (1, 1, 1), "gallery": (2, 2, 1)},
        {"query": (1, 1, 0)},
    ),  # no gallery line: no gallery row says whether it is occluded
]
SUMMARY_IDS = [
    "market1501",
    "dukemtmc",
    "occluded_duke",
    "p_dukemtmc",
    "partial_ilids",
    "partial_reid",
    "partial_duke",
    "folder_market_style",
    "folder_csv_as_root",
    "folder_csv_option_and_root",
]


@pytest.mark.parametrize("name, build, expected, occluded", SUMMARY_CASES, ids=SUMMARY_IDS)
def test_cli_data_summary_counts_on_each_tree(tmp_path, name, build, expected, occluded):
    from occreid.cli import app

    options = build(tmp_path)
    options = options if isinstance(options, list) else ["--root", str(tmp_path)]
    result = CliRunner().invoke(app, ["data", "summary", name, *options])
    assert result.exit_code == 0, result.output
    rows = {
        cells[0]: tuple(int(c) for c in cells[1:4])
        for cells in (
            [c.strip() for c in line.split("|")] for line in result.output.splitlines() if "|" in line
        )
        if cells[0] in ("train", "query", "gallery")
    }
    assert rows == expected
    lines = [line for line in result.output.splitlines() if "occluded:" in line]
    assert lines == [
        f"  {split:<8}  occluded: {o} of {n} images" + (f", {u} unknown" if u else "")
        for split, (o, n, u) in occluded.items()
    ]
