"""A training run's folder under the one overwrite rule every command follows (docs/outputs.md states the rule
for users; the checks of single output files are occreid.utils.files).

    A command never replaces a file or a run that already exists. `--overwrite` replaces it, and then only
    what that command itself writes; `occreid train --resume auto` continues a run instead.

    check_run_dir(Path("runs/x"), resume=None, overwrite=False)    # refuses a folder that holds a run
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from occreid.errors import OccreidError
from occreid.utils.locks import file_lock, lock_path_for

# What `occreid train` writes into its run directory; --overwrite removes exactly these (nothing else there).
RUN_FILES = (
    "config.yaml",
    "environment.json",
    "dataset.json",
    "metrics.jsonl",
    "last.pt",
    "best.pt",
    "eval.json",
    "tb",
)


def expand_run_dir(output_dir: str, data_root: str) -> Path:
    """train.output_dir with "{data}" replaced by the data's name: data.root's folder or CSV name
    (`runs/{data}` with data.root=data/mine or data/mine.csv -> runs/mine)."""
    name = Path(data_root).expanduser().resolve().stem if data_root else "data"
    return Path(output_dir.replace("{data}", name))


def run_files(run_dir: Path) -> list[Path]:
    """The files (and the TensorBoard folder) of a training run that exist in `run_dir`."""
    return [run_dir / name for name in RUN_FILES if (run_dir / name).exists()]


def refuse_existing_run(run_dir: Path, option: str = "train.output_dir") -> None:
    existing = run_files(run_dir)
    if existing:
        raise OccreidError(
            f"{option} {run_dir} already holds a run ({', '.join(p.name for p in existing)}); continue it "
            "with --resume auto, replace it with --overwrite, or choose another output folder"
        )


def check_run_dir(run_dir: Path, resume: object, overwrite: bool, option: str = "train.output_dir") -> None:
    """Before training: a run folder that holds a started or finished run is refused unless the run is resumed
    (`resume`) or replaced (`overwrite`); the folder must be writable. Read-only, so every DDP rank can call
    it."""
    run_dir = Path(run_dir)
    # Continuing the run in this folder; `--resume PATH` of another folder's checkpoint writes a new run here.
    here = resume == "auto" or (bool(resume) and Path(str(resume)).resolve().parent == run_dir.resolve())
    if here and overwrite:
        raise OccreidError("--resume continues a run and --overwrite replaces it; give only one of them")
    if not here and not overwrite:
        refuse_existing_run(run_dir, option)
    if resume == "auto" and not (run_dir / "last.pt").is_file():
        finished = [p.name for p in run_files(run_dir) if p.name in ("best.pt", "eval.json")]
        if finished:  # a run that cannot be continued is never started again over its results
            raise OccreidError(
                f"--resume auto: {run_dir} has no last.pt to continue from, but holds a run's results "
                f"({', '.join(finished)}); restore last.pt, replace the run with --overwrite, or choose "
                "another output folder"
            )
    if run_dir.exists() and not run_dir.is_dir():
        raise OccreidError(f"{option} {run_dir} is a file, not a folder")


def clear_run_dir(run_dir: Path) -> None:
    """--overwrite: remove what an earlier training run wrote into `run_dir` (RUN_FILES and checkpoint temp
    files), nothing else."""
    for path in run_files(run_dir) + sorted(run_dir.glob("*.pt*.tmp")):
        shutil.rmtree(path) if path.is_dir() else path.unlink()


@contextlib.contextmanager
def claim_run_dir(run_dir: Path, option: str = "train.output_dir") -> Iterator[None]:
    """Own the run folder for the `with` block: an operating-system lock on `<run_dir>/.lock`, taken without
    waiting (a second run into the folder is refused, naming the holder's PID) and released when the process
    ends, SIGKILL included, so `--resume auto` works after a crash. Under DDP only rank 0 (RANK) holds it."""
    if int(os.environ.get("RANK", "0")) != 0:
        yield
        return
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise OccreidError(f"{option} {run_dir} is a file, not a folder")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OccreidError(f"{option} {run_dir}: cannot create this folder ({exc.strerror})") from None
    with file_lock(lock_path_for(run_dir), what=f"the run folder {run_dir}"):
        yield
