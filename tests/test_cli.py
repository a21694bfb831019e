"""The real `occreid` entry point (`python -m occreid`, i.e. occreid.cli.main) in a subprocess: an error the
user can fix is one line on stderr starting with "error:", exit status 2, and no traceback."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

# a tqdm line, e.g. "Partial-Duke:   0%|   | 0/3 [00:00<?, ?img/s]", or the plain line occreid.engine.progress
# prints when stderr is not a terminal, e.g. "epoch 1/2: 3/9 steps (33%) in 0:00:02, 1.5 steps/s"
PROGRESS_BAR = re.compile(r"^[\w /-]+: +(\d+%\||\d+/\d+ \w+ \(\d+%\))")


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "occreid", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def assert_user_error(result: subprocess.CompletedProcess, *names: str) -> str:
    """Exit status 2, a single stderr line `error: ...` naming every one of `names` (after the progress bar,
    if the command had started one), no traceback anywhere."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip() and not PROGRESS_BAR.match(line)]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert result.stderr.rstrip().endswith(lines[0])
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


def test_synth_negative_seed(tmp_path):
    result = run("synth", "--out", str(tmp_path / "neg"), "--preset", "small", "--seed", "-1", cwd=tmp_path)
    assert_user_error(result, "--seed", "-1")
    assert not (tmp_path / "neg").exists()  # nothing written


def test_data_summary_missing_root(tmp_path):
    missing = tmp_path / "nonexistent"
    result = run("data", "summary", "market1501", "--root", str(missing), cwd=tmp_path)
    assert_user_error(result, str(missing), "does not exist")


def test_data_summary_incomplete_synthocc(tmp_path):
    root = tmp_path / "synthocc"
    for d, name in (
        ("bounding_box_train", "0001_c1s1_000001_00.jpg"),
        ("query", "0002_c1s1_000002_00.jpg"),
        ("bounding_box_test", "0002_c2s1_000003_00.jpg"),
    ):
        (root / d).mkdir(parents=True)
        (root / d / name).write_bytes(b"")
    result = run("data", "summary", "synthocc", "--root", str(root), cwd=tmp_path)
    assert_user_error(result, "synthocc.json", "occreid synth")


def test_make_partial_duke_empty_image(tmp_path):
    duke = tmp_path / "DukeMTMC-reID"
    for d in ("bounding_box_train", "query", "bounding_box_test"):
        (duke / d).mkdir(parents=True)
        (duke / d / "0001_c1_f0000001.jpg").write_bytes(b"")  # an empty file: PIL cannot identify it
    result = run(
        "data", "make-partial-duke", "--duke", str(duke), "--out", str(tmp_path / "pd"), cwd=tmp_path
    )
    assert_user_error(result, "cannot read image", "0001_c1_f0000001.jpg")
    assert not (tmp_path / "pd").exists()


def test_train_config_with_an_unknown_key(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("train:\n  epochs: 1\n  learning_rate: 0.1\n")
    result = run("train", "-c", str(config), cwd=tmp_path)
    assert_user_error(result, str(config), "unknown key 'train.learning_rate'")


@pytest.mark.parametrize(
    "override, names",
    [
        ("train.nope=1", ["unknown key 'train.nope'"]),
        ("train.seed=-1", ["'train.seed'", "greater than or equal to 0"]),
        ("pgfl_kd.sab=yes", ["'pgfl_kd.sab'", "valid boolean"]),
    ],
)
def test_train_bad_override(tmp_path, override, names):
    result = run("train", "--set", override, cwd=tmp_path)
    assert_user_error(result, *names)
    assert not (tmp_path / "runs").exists()  # refused before anything is written
