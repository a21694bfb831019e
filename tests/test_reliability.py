"""Nothing lost under concurrency, resume and full disks; one clear line for every bad input.

The tests run the real entry point (`python -m occreid`, tests/test_cli.py's `run`) and check the exit status,
the one `error:` line and that no traceback is shown; where a command could lose data, every byte of what was
in the way is compared afterwards. A full disk is injected: `os.fsync` of the named file raises ENOSPC.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_cli import assert_user_error, run
from test_user_data import sets, snapshot

from occreid.errors import OccreidError

# `occreid ...` with os.fsync failing with ENOSPC for files whose path contains $ENOSPC_ON: a full disk at the
# moment that file is written (every occreid write goes through utils/files.atomic_write, which fsyncs).
FULL_DISK = """
import errno, os, sys
real_fsync = os.fsync
def fsync(fd):
    if os.environ["ENOSPC_ON"] in os.readlink(f"/proc/self/fd/{fd}"):
        raise OSError(errno.ENOSPC, "No space left on device")
    return real_fsync(fd)
os.fsync = fsync
from occreid.cli import main
sys.argv = ["occreid", *sys.argv[1:]]
main()
"""


def run_full_disk(on: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "ENOSPC_ON": on}
    return subprocess.run(
        [sys.executable, "-c", FULL_DISK, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def start(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "occreid", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    from occreid.data.synthocc import generate

    root = tmp_path_factory.mktemp("synth") / "synthocc"
    generate(root, preset="small", seed=0, protocol="occluded", workers=2, progress=False)
    return root


@pytest.fixture(scope="module")
def tiny_run(synth_root, tmp_path_factory) -> Path:
    """A finished 1-epoch run (baseline, ResNet-18 at 64 x 32), written by the CLI: its run directory."""
    out = tmp_path_factory.mktemp("run") / "run"
    done = run("train", *sets(f"data.root={synth_root}"), "--output-dir", str(out), cwd=out.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def train_args(synth_root: Path, run_dir: Path, *overrides: str) -> list[str]:
    return ["train", *sets(f"data.root={synth_root}", *overrides), "--output-dir", str(run_dir)]


def owned(folder: Path) -> dict[str, bytes]:
    """`snapshot` of a run folder without the lock file a command leaves there (empty once released)."""
    files = snapshot(folder)
    assert files.pop(".lock", b"") == b""
    return files


def copy_run(tiny_run: Path, dest: Path) -> Path:
    shutil.copytree(tiny_run, dest, ignore=shutil.ignore_patterns(".lock"))
    return dest


# ----------------------------------------------------------------------------------------------------------
# Run folders: --resume auto never starts again over a finished run (1); one owner at a time (5); a resume
# keeps the run's settings (6) without the pretrained file (24); a bad camera count before anything is
# written (25)


def test_resume_auto_without_last_pt_keeps_the_finished_run(tiny_run, tmp_path, synth_root):
    folder = copy_run(tiny_run, tmp_path / "run")
    (folder / "last.pt").unlink()  # moved away to free disk space, say
    before = owned(folder)
    result = run(*train_args(synth_root, folder), "--resume", "auto", cwd=tmp_path)
    assert_user_error(result, "--resume auto", "no last.pt", "best.pt", "--overwrite")
    assert owned(folder) == before


def test_a_second_train_into_a_held_run_folder_is_refused_naming_the_holder(synth_root, tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder / ".lock")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        result = run(*train_args(synth_root, folder), cwd=tmp_path)
        assert_user_error(result, f"PID {holder.pid}", str(folder))
        assert sorted(p.name for p in folder.iterdir()) == [".lock"]  # nothing written
    finally:
        holder.kill()
        holder.wait()


HOLD = """
import sys, time
from occreid.utils.locks import file_lock
with file_lock(sys.argv[1], what="the test folder"):
    print("held", flush=True)
    time.sleep(60)
"""


@pytest.mark.slow  # several commands at once or one after another (> 20 s here)
def test_two_trains_into_one_new_folder_one_runs_the_other_is_refused(synth_root, tmp_path):
    for repeat in range(2):
        folder = tmp_path / f"run{repeat}"
        args = train_args(synth_root, folder)
        procs = [start(*args, cwd=tmp_path) for _ in range(2)]
        results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
        codes = sorted(code for code, _, _ in results)
        assert codes == [0, 2], [(c, err[-1500:]) for c, _, err in results]
        refused = next(err for code, _, err in results if code == 2)
        assert "Traceback" not in refused and refused.strip().startswith("error: "), refused
        assert "in use by PID" in refused or "already holds a run" in refused, refused
        records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
        steps = [r["step"] for r in records if r["kind"] == "train"]
        assert steps == [1, 2]  # one run's log, not two mixed


@pytest.mark.slow  # several commands at once or one after another (> 20 s here)
def test_sigkill_then_resume_auto_continues_the_run(synth_root, tmp_path):
    folder = tmp_path / "run"
    proc = start(*train_args(synth_root, folder, "train.epochs=30"), cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        while not (folder / "last.pt").is_file() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (folder / "last.pt").is_file()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    epoch = torch.load(folder / "last.pt", weights_only=True)["epoch"]
    resumed = run(
        *train_args(synth_root, folder, f"train.epochs={epoch + 1}"), "--resume", "auto", cwd=tmp_path
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert torch.load(folder / "last.pt", weights_only=True)["epoch"] == epoch + 1


def test_a_resume_refuses_a_changed_setting_and_keeps_every_byte(tiny_run, tmp_path, synth_root):
    folder = copy_run(tiny_run, tmp_path / "run")
    before = owned(folder)
    changed = train_args(synth_root, folder, "train.epochs=2", "train.lr=0.1")
    assert_user_error(run(*changed, "--resume", "auto", cwd=tmp_path), "train.lr=0.1", "train.epochs")
    assert owned(folder) == before


def test_a_resume_needs_no_pretrained_file_and_may_change_the_safe_settings(tiny_run, tmp_path, synth_root):
    folder = copy_run(tiny_run, tmp_path / "run")
    gone = tmp_path / "imagenet_resnet18.pth"  # the run's pretrained file, since deleted
    safe = ["train.epochs=2", "train.eval_period=1", "train.log_period=5", f"model.pretrained={gone}"]
    resumed = run(*train_args(synth_root, folder, *safe), "--resume", "auto", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    state = torch.load(folder / "last.pt", weights_only=True)
    assert state["epoch"] == 2 and state["config"]["train"]["epochs"] == 2


def test_the_ogfr_agents_rate_is_a_setting_a_resume_keeps():
    from occreid.config import load_config
    from occreid.engine.resume import SAFE_ON_RESUME, changed_settings

    stored = load_config(None, ["model.name=ogfr"])
    new = load_config(None, ["model.name=ogfr", "ogfr.agent_lr=0.5", "train.epochs=7", "data.num_workers=0"])
    assert [c.split("=")[0] for c in changed_settings(new, stored)] == ["ogfr.agent_lr"]
    assert {"train.epochs", "train.eval_period", "train.log_period", "data.num_workers"} <= set(
        SAFE_ON_RESUME
    )


def test_a_bad_camera_count_is_refused_before_the_run_folder_is_written(synth_root, tmp_path):
    folder = tmp_path / "run"
    result = run(*train_args(synth_root, folder, "model.num_cameras=2"), cwd=tmp_path)
    assert_user_error(result, "model.num_cameras=2", "camera id")
    assert not [p for p in folder.iterdir() if p.name != ".lock"]  # the corrected command is not refused


def test_a_negative_camera_id_is_refused_by_the_vit_camera_embedding():
    from occreid.modeling.vit import ViTBackbone

    vit = ViTBackbone("vit_tiny_patch16", (32, 16), depth=1, num_cameras=3)
    vit.embed(torch.zeros(2, 3, 32, 16), torch.tensor([0, 2]))  # in range
    with pytest.raises(OccreidError, match="camera id -1"):
        vit.embed(torch.zeros(2, 3, 32, 16), torch.tensor([0, -1]))


# ----------------------------------------------------------------------------------------------------------
# Full disk: one line, and nothing that blocks a rerun (15)


@pytest.mark.slow  # several commands at once or one after another (> 20 s here)
def test_a_full_disk_at_a_checkpoint_save_is_one_line_and_resume_auto_reruns(synth_root, tmp_path):
    folder = tmp_path / "run"
    full = run_full_disk("last.pt", *train_args(synth_root, folder), cwd=tmp_path)
    assert_user_error(full, "last.pt", "No space left on device")
    assert not list(folder.glob("*.tmp")) and not (folder / "last.pt").exists()
    rerun = run(*train_args(synth_root, folder), "--resume", "auto", cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-2000:]


@pytest.mark.slow  # several commands at once or one after another (> 20 s here)
def test_a_full_disk_at_eval_out_leaves_no_file_that_blocks_the_rerun(tiny_run, tmp_path):
    out = tmp_path / "eval.json"
    args = ["eval", "--checkpoint", str(tiny_run / "last.pt"), "--out", str(out)]
    assert_user_error(run_full_disk("eval.json", *args, cwd=tmp_path), str(out), "No space left on device")
    assert list(tmp_path.iterdir()) == []  # no 0-byte JSON, no temp file
    rerun = run(*args, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert json.loads(out.read_text())["metrics"]["mAP"] >= 0


@pytest.mark.slow  # several commands at once or one after another (> 20 s here)
def test_a_full_disk_at_index_build_and_add_keeps_the_index(tiny_run, synth_root, tmp_path):
    index = tmp_path / "gallery.npz"
    build = [
        "index",
        "build",
        "--checkpoint",
        str(tiny_run / "last.pt"),
        "--out",
        str(index),
        "--device",
        "cpu",
    ]
    build += ["--images", str(synth_root / "query")]
    assert_user_error(run_full_disk("gallery.npz", *build, cwd=tmp_path), str(index), "No space left")
    assert not index.exists() and not list(tmp_path.glob("*.tmp"))
    assert run(*build, cwd=tmp_path).returncode == 0  # the rerun is not blocked
    before = index.read_bytes()
    add = ["index", "add", "--index", str(index), "--images", str(synth_root / "bounding_box_test")]
    assert_user_error(run_full_disk("gallery.npz", *add, "--device", "cpu", cwd=tmp_path), "No space left")
    assert index.read_bytes() == before and not list(tmp_path.glob("*.tmp"))


# ----------------------------------------------------------------------------------------------------------
# Indexes: two writers at once both land (2); .tif images (7); NaN features (11); broken files (19); a folder
# as --image (20); durable files with the umask's permissions (28)


def image_folders(synth_root: Path, dest: Path, counts: dict[str, int]) -> dict[str, Path]:
    """Folders of distinct SynthOcc gallery images, `counts[name]` each."""
    images = sorted((synth_root / "bounding_box_test").glob("*.jpg"))
    folders, start = {}, 0
    for name, n in counts.items():
        folders[name] = dest / name
        folders[name].mkdir(parents=True)
        for path in images[start : start + n]:
            shutil.copy(path, folders[name])
        start += n
    return folders


@pytest.mark.slow  # several commands at once or one after another (> 20 s here)
def test_two_index_adds_at_once_both_land(tiny_run, synth_root, tmp_path):
    from occreid.evaluation import GalleryIndex

    folders = image_folders(synth_root, tmp_path / "images", {"base": 6, "a": 20, "b": 20})
    base = tmp_path / "base.npz"
    build = ["index", "build", "--checkpoint", str(tiny_run / "last.pt"), "--images", str(folders["base"])]
    built = run(*build, "--out", str(base), "--device", "cpu", cwd=tmp_path)
    assert built.returncode == 0, built.stderr[-2000:]
    for repeat in range(2):
        index = tmp_path / f"gallery{repeat}.npz"
        shutil.copy(base, index)
        procs = [
            start(
                "index",
                "add",
                "--index",
                str(index),
                "--images",
                str(folders[k]),
                "--device",
                "cpu",
                cwd=tmp_path,
            )
            for k in ("a", "b")
        ]
        for proc in procs:
            assert proc.wait(timeout=300) == 0, proc.communicate()[1][-2000:]
        assert len(GalleryIndex.load(index)) == 46
        assert len(set(GalleryIndex.load(index).paths)) == 46


def test_index_build_reads_tif_images(tiny_run, synth_root, tmp_path):
    from occreid.cli.evaluation import list_images

    folder = tmp_path / "images"
    folder.mkdir()
    source = next((synth_root / "query").glob("*.jpg"))
    Image.open(source).save(folder / "a.tif")
    Image.open(source).save(folder / "b.TIFF")
    assert [p.name for p in list_images(folder)] == ["a.tif", "b.TIFF"]


def _plant_index(path: Path, header, features, paths) -> Path:
    np.savez(
        path, features=features, paths=np.asarray(paths, dtype=str), header=np.asarray(json.dumps(header))
    )
    return path


GOOD_HEADER = {"version": 1, "metric": "euclidean", "normalize": False, "meta": {}}


@pytest.mark.parametrize(
    "header, features, paths, words",
    [
        (GOOD_HEADER, np.full((2, 4), np.nan, np.float32), ["a", "b"], ["NaN"]),
        ([], np.zeros((2, 4), np.float32), ["a", "b"], ["header is list"]),
        ({"version": 1, "normalize": False}, np.zeros((2, 4), np.float32), ["a", "b"], ["no metric"]),
        (GOOD_HEADER, np.zeros((3, 4), np.float32), ["a", "b"], ["3 feature rows but 2 paths"]),
    ],
)
def test_broken_or_nan_indexes_are_one_line(tmp_path, header, features, paths, words):
    index = _plant_index(tmp_path / "bad.npz", header, features, paths)
    image = tmp_path / "q.png"
    Image.new("RGB", (32, 64)).save(image)
    result = run("search", "--index", str(index), "--image", str(image), cwd=tmp_path)
    assert_user_error(result, str(index), *words)


def test_nan_features_are_never_added_to_an_index():
    from occreid.evaluation import GalleryIndex

    with pytest.raises(OccreidError, match="NaN"):
        GalleryIndex().add(np.array([[1.0, np.nan]]), ["a"])


def test_a_folder_as_query_image_or_pretrained_file_is_named_a_folder(tiny_run, synth_root, tmp_path):
    index = _plant_index(tmp_path / "g.npz", GOOD_HEADER, np.zeros((1, 4), np.float32), ["a"])
    result = run("search", "--index", str(index), "--image", str(tmp_path), cwd=tmp_path)
    assert_user_error(result, "--image", "is a folder")
    result = run(*train_args(synth_root, tmp_path / "run", f"model.pretrained={tmp_path}"), cwd=tmp_path)
    assert_user_error(result, "model.pretrained", "is a folder")


def test_index_files_are_fsynced_with_the_umasks_permissions(tmp_path, monkeypatch):
    from occreid.evaluation import GalleryIndex

    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(os.readlink(f"/proc/self/fd/{fd}")) or real(fd))
    old = os.umask(0o022)
    try:
        index = GalleryIndex()
        index.add(np.ones((2, 3)), ["a", "b"])
        index.save(tmp_path / "g.npz")
    finally:
        os.umask(old)
    assert any(".npz" in p for p in synced) and str(tmp_path) in synced  # the file, then its folder
    assert (tmp_path / "g.npz").stat().st_mode & 0o777 == 0o644


# ----------------------------------------------------------------------------------------------------------
# Picture commands and other outputs: never replaced without --overwrite (3, 4, 22); bad --out and --patch
# (13, 14)


def test_pose_extract_synthetic_never_replaces_another_store(synth_root, tmp_path):
    other = tmp_path / "rtm.npz"
    other.write_bytes(b"another estimator's keypoints")
    args = ["pose", "extract", "--dataset", "synthocc", "--root", str(synth_root), "--estimator", "synthetic"]
    assert_user_error(run(*args, "--out", str(other), cwd=tmp_path), str(other), "--overwrite")
    assert other.read_bytes() == b"another estimator's keypoints"
    assert run(*args, "--out", str(other), "--overwrite", cwd=tmp_path).returncode == 0


def test_picture_commands_never_replace_a_picture(synth_root, tmp_path):
    picture = tmp_path / "mine.png"
    Image.new("RGB", (4, 4), (1, 2, 3)).save(picture)
    before = picture.read_bytes()
    commands = {
        "synth preview": ["synth", "preview", str(synth_root), "--num-ids", "1"],
        "pose show": ["pose", "show", "--dataset", "synthocc", "--root", str(synth_root), "--num", "1"],
    }
    for name, args in commands.items():
        assert_user_error(run(*args, "--out", str(picture), cwd=tmp_path), str(picture), "--overwrite")
        assert picture.read_bytes() == before, name
        done = run(*args, "--out", str(picture), "--overwrite", cwd=tmp_path)
        assert done.returncode == 0 and picture.read_bytes() != before, (name, done.stderr[-2000:])
        before = picture.read_bytes()


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--patch", "16/0"], ["--patch 16/0", "STRIDE"]),
        (["--patch", "200/16"], ["--patch 200/16", "shorter side"]),
        (["--patch", "-16/16"], ["--patch -16/16"]),
        (["--out", "noext"], ["--out noext", ".png"]),
        (["--out", "afile/x.png"], ["afile/x.png", "is a file"]),
        (["--out", "afolder", "--force"], ["afolder", "is a folder"]),
        (["--out", "taken.png"], ["taken.png", "already exists", "--overwrite"]),
    ],
)
def test_augment_preview_bad_out_and_patch_are_one_line(synth_root, tmp_path, extra, words):
    (tmp_path / "afile").write_text("a file")
    (tmp_path / "afolder").mkdir()
    (tmp_path / "taken.png").write_bytes(b"mine")
    args = ["data", "augment-preview", "--out", "x.png", *sets(f"data.root={synth_root}"), "--num", "1"]
    assert_user_error(run(*args, *extra, cwd=tmp_path), *words)
    assert (tmp_path / "taken.png").read_bytes() == b"mine"


def test_augment_preview_takes_overwrite(synth_root, tmp_path):
    (tmp_path / "taken.png").write_bytes(b"mine")
    args = ["data", "augment-preview", "--out", "taken.png", *sets(f"data.root={synth_root}"), "--num", "1"]
    done = run(*args, "--overwrite", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert Image.open(tmp_path / "taken.png").size[0] > 4


def test_out_under_a_file_is_one_line_for_every_command(synth_root, tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("a file")
    duke = tmp_path / "DukeMTMC-reID"
    for split in ("bounding_box_train", "query", "bounding_box_test"):
        (duke / split).mkdir(parents=True)
        Image.new("RGB", (16, 32)).save(duke / split / "0001_c1_f0000001.jpg")
    commands = [
        [
            "pose",
            "extract",
            "--dataset",
            "synthocc",
            "--root",
            str(synth_root),
            "--estimator",
            "synthetic",
            "--out",
            str(blocker / "k.npz"),
        ],
        ["pose", "show", "--dataset", "synthocc", "--root", str(synth_root), "--out", str(blocker / "p.png")],
        ["data", "make-partial-duke", "--duke", str(duke), "--out", str(blocker / "pd")],
        ["synth", "preview", str(synth_root), "--out", str(blocker / "p.png")],
    ]
    for args in commands:
        assert_user_error(run(*args, cwd=tmp_path), str(blocker))
    assert blocker.read_text() == "a file"


# ----------------------------------------------------------------------------------------------------------
# Settings found before work starts: 8, 12, 18, 21, 26, 27; hybrid ViT grids (16); ViT files (17); EXIF (10);
# the README's commands (23)


def test_erase_ratio_zero_with_erasing_on_is_refused(tmp_path):
    result = run("train", "--set", "model.name=ogfr", "--set", "ogfr.erase_ratio=0", cwd=tmp_path)
    assert_user_error(result, "ogfr.erase_ratio=0", "ogfr.fepm=off")
    from occreid.config import load_config

    assert load_config(None, ["ogfr.erase_ratio=0", "ogfr.fepm=off"]).ogfr.erase_ratio == 0


def test_empty_occlusion_types_are_refused(tmp_path):
    result = run("train", "--set", "model.name=ogfr", "--set", "occlusion.types=[]", cwd=tmp_path)
    assert_user_error(result, "occlusion.types", "at least one")


@pytest.mark.parametrize("present", ["query", "gallery"])
def test_a_csv_with_query_but_no_gallery_is_refused_before_training(synth_root, tmp_path, present):
    images = sorted((synth_root / "bounding_box_train").glob("*.jpg"))[:16]
    rows = [f"{p},{i % 4},{i % 2},train" for i, p in enumerate(images)] + [f"{images[0]},0,1,{present}"]
    csv = tmp_path / "data.csv"
    csv.write_text("\n".join(rows) + "\n")
    folder = tmp_path / "run"
    result = run(
        "train", *sets("data.dataset=folder", f"data.root={csv}"), "--output-dir", str(folder), cwd=tmp_path
    )
    counts = "1 query and 0 gallery" if present == "query" else "0 query and 1 gallery"
    assert_user_error(result, f"has {counts} images", "evaluation needs both")
    assert not [p for p in folder.iterdir() if p.name != ".lock"]  # refused before the first step


def test_a_csv_saved_with_a_byte_order_mark_reads_its_header(synth_root, tmp_path):
    from occreid.data.datasets import load_dataset

    images = sorted((synth_root / "bounding_box_train").glob("*.jpg"))[:2]
    csv = tmp_path / "excel.csv"
    text = "path,pid,camid,split\n" + "".join(f"{p},{i},0,train\n" for i, p in enumerate(images))
    csv.write_bytes(b"\xef\xbb\xbf" + text.encode())
    dataset = load_dataset("folder", None, csv=csv)
    assert [r.path for r in dataset.train] == [str(p) for p in images]


def test_eval_names_the_overrides_that_change_the_model(tiny_run, tmp_path):
    result = run(
        "eval",
        "--checkpoint",
        str(tiny_run / "last.pt"),
        "--set",
        "pgfl_kd.num_parts=3",
        "--set",
        "model.backbone=resnet34",
        "--out",
        str(tmp_path / "e.json"),
        cwd=tmp_path,
    )
    line = assert_user_error(result, "pgfl_kd.num_parts", "model.backbone")
    assert "model.*" not in line


def test_demo_epochs_zero_is_refused_before_any_work(tmp_path):
    assert_user_error(run("demo", "--epochs", "0", "--out", str(tmp_path / "demo"), cwd=tmp_path), "--epochs")
    assert not (tmp_path / "demo").exists()


@pytest.mark.parametrize("option", ["ogfr.occlusion_head=true", "ogfr.token_distill=true"])
def test_hybrid_vit_patch_mask_on_a_padded_grid(option, batch_for):
    from occreid.config import load_config
    from occreid.methods import build_model

    cfg = load_config(
        None,
        [
            "model.name=ogfr",
            "model.backbone=vit_hybrid_mnv2",
            "model.pretrained=false",
            "model.vit_depth=2",
            "ogfr.agent_block=1",
            "ogfr.shared_blocks=1",
            "data.image_size=[72,40]",
            option,
        ],
    )
    method = build_model(cfg, num_classes=4)
    assert method.backbone.vit.grid_size == (5, 3)  # ceil(72 / 16) x ceil(40 / 16)
    terms = method.training_step(batch_for(method.batch_needs(), (72, 40)))
    assert all(torch.isfinite(v) for v in terms.values())


def test_a_vit_file_with_a_non_square_position_embedding_is_one_line(tmp_path):
    import timm

    from occreid.modeling.vit import ViTBackbone

    state = timm.create_model("vit_tiny_patch16_224", pretrained=False, depth=1).state_dict()
    state["pos_embed"] = torch.zeros(1, 1 + 14 * 10, state["pos_embed"].shape[2])
    torch.save(state, tmp_path / "vit.pth")
    with pytest.raises(OccreidError, match=r"model.pretrained: .*vit.pth.*\(1, 141, 192\)"):
        ViTBackbone("vit_tiny_patch16", (32, 16), depth=1, pretrained=str(tmp_path / "vit.pth"))


def test_exif_orientation_turns_the_image_upright(tmp_path):
    from occreid.data.images import read_image

    upright = np.zeros((40, 20, 3), np.uint8)
    upright[:10] = 255  # white head at the top
    stored = Image.fromarray(np.rot90(upright, k=1).copy())  # saved on its side, as a phone does
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    stored.save(tmp_path / "phone.jpg", exif=exif, quality=100)
    image = np.asarray(read_image(tmp_path / "phone.jpg"))
    assert image.shape == (40, 20, 3)
    assert image[:10].mean() > 200 and image[10:].mean() < 50


def test_the_docs_synth_commands_use_the_form_occreid_synth_takes():
    import re

    root = Path(__file__).resolve().parents[1]
    spaced = re.compile(r"--train-occluders\s+[a-z]+\s+(vehicle|pole|board|person|clutter)\b")
    for path in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        assert not spaced.search(path.read_text()), path


def test_space_separated_train_occluders_get_the_comma_form_in_one_line(tmp_path):
    result = run(
        "synth", "--out", str(tmp_path / "s"), "--train-occluders", "vehicle", "pole", "board", cwd=tmp_path
    )
    assert_user_error(result, "--train-occluders vehicle,pole,board")
    assert not (tmp_path / "s").exists()


def test_a_full_disk_anywhere_else_is_one_line(monkeypatch, capsys):
    import errno

    import occreid.cli as cli

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", "runs/x/metrics.jsonl")

    monkeypatch.setattr(cli, "app", full)
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "error: runs/x/metrics.jsonl: No space left on device; free some space and run the command again"
    ]
