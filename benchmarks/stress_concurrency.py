"""Concurrency stress: the two cases where two occreid commands write the same thing at once, each repeated.

1. Two `occreid index add` into one index at the same moment, each with its own images. Nothing may be lost:
   the index ends with the images it held plus both folders' (the writers merge under the index's lock).
2. Two `occreid train` into one new run folder at the same moment (a tiny ResNet-18 run). One may run; the
   other must stop with one `error:` line (the folder is in use by the first one's PID, or already holds its
   run), and `metrics.jsonl` must be one run's log, not two mixed.

Each case runs --repeats times (default 10) through the real entry point, `python -m occreid`.

    python benchmarks/stress_concurrency.py              # writes benchmarks/results/stress_concurrency.md
    python benchmarks/stress_concurrency.py --repeats 2  # a quick check; writes no results file
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "stress_concurrency.md"
TINY = [
    "data.image_size=[64,32]",
    "data.p=4",
    "data.k=4",
    "data.num_workers=0",
    "model.name=baseline",
    "model.backbone=resnet18",
    "model.pretrained=false",
    "train.epochs=1",
    "train.steps_per_epoch=2",
    "train.warmup_epochs=0",
    "train.eval_period=0",
    "train.log_period=1",
    "train.device=cpu",
]


def occreid(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "occreid", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(procs: list[subprocess.Popen]) -> list[tuple[int, str]]:
    return [(p.wait(timeout=600), p.communicate()[1]) for p in procs]


def train_args(root: Path, run_dir: Path) -> list[str]:
    sets = [a for o in [*TINY, f"data.root={root}"] for a in ("--set", o)]
    return ["train", *sets, "--output-dir", str(run_dir)]


def one_line_refusal(stderr: str) -> bool:
    lines = [line for line in stderr.splitlines() if line.strip()]
    return "Traceback" not in stderr and bool(lines) and lines[-1].startswith("error: ")


def index_case(work: Path, root: Path, checkpoint: Path, repeats: int) -> dict[str, object]:
    from occreid.evaluation import GalleryIndex

    images = sorted((root / "bounding_box_test").glob("*.jpg"))
    folders = {}
    for name, part in (("base", images[:30]), ("a", images[30:90]), ("b", images[90:150])):
        folders[name] = work / "images" / name
        folders[name].mkdir(parents=True)
        for path in part:
            shutil.copy(path, folders[name])
    expected = sum(len(list(f.iterdir())) for f in folders.values())
    counts, failures = [], 0
    for repeat in range(repeats):
        index = work / f"gallery{repeat}.npz"
        build = ["index", "build", "--checkpoint", str(checkpoint), "--images", str(folders["base"])]
        ((code, err),) = finish([occreid(*build, "--out", str(index), "--device", "cpu", cwd=work)])
        assert code == 0, err
        adds = [
            occreid(
                "index",
                "add",
                "--index",
                str(index),
                "--images",
                str(folders[k]),
                "--device",
                "cpu",
                cwd=work,
            )
            for k in ("a", "b")
        ]
        results = finish(adds)
        failures += sum(code != 0 for code, _ in results)
        counts.append(len(set(GalleryIndex.load(index).paths)))
    return {"expected": expected, "counts": counts, "failed_adds": failures}


def train_case(work: Path, root: Path, repeats: int) -> dict[str, object]:
    outcomes = []
    for repeat in range(repeats):
        run_dir = work / f"run{repeat}"
        results = finish([occreid(*train_args(root, run_dir), cwd=work) for _ in range(2)])
        codes = sorted(code for code, _ in results)
        refusal = next((err for code, err in results if code != 0), "")
        log = (
            (run_dir / "metrics.jsonl").read_text().splitlines()
            if (run_dir / "metrics.jsonl").exists()
            else []
        )
        steps = [json.loads(line)["step"] for line in log if json.loads(line)["kind"] == "train"]
        kind = "in use by PID" if "in use by PID" in refusal else "already holds a run" if refusal else "-"
        outcomes.append(
            {"codes": codes, "one_line": one_line_refusal(refusal), "refusal": kind, "steps": steps}
        )
    return {"outcomes": outcomes}


def report(index: dict, train: dict, repeats: int, seconds: float) -> str:
    ok_index = sum(c == index["expected"] for c in index["counts"])
    outcomes = train["outcomes"]
    ok_train = sum(o["codes"] == [0, 2] and o["one_line"] and o["steps"] == [1, 2] for o in outcomes)
    refusals: dict[str, int] = {}
    for o in outcomes:
        refusals[o["refusal"]] = refusals.get(o["refusal"], 0) + 1
    refused = ", ".join(f"{k} x{v}" for k, v in sorted(refusals.items()))
    index_row = (
        f"| two `index add` at once (30-image index + 60 + 60 images) | {repeats} | {ok_index}/{repeats} | "
        f"images in the index after both: {index['counts']} (expected {index['expected']}); "
        f"failed adds: {index['failed_adds']} |"
    )
    train_row = (
        f"| two `train` into one new folder at once | {repeats} | {ok_train}/{repeats} | exit codes 0 and 2: "
        f"{sum(o['codes'] == [0, 2] for o in outcomes)}/{repeats}; the refusal, one `error:` line without a "
        f"traceback: {refused}; metrics.jsonl holds one run's steps [1, 2]: "
        f"{sum(o['steps'] == [1, 2] for o in outcomes)}/{repeats} |"
    )
    header = (
        f"Concurrency stress, {repeats} repeats of each case through `python -m occreid`, on a shared 2-core "
        f"CPU machine ({seconds:.0f} s in all). Command: `python benchmarks/stress_concurrency.py`."
    )
    table = ["| case | repeats | nothing lost | detail |", "|---|---:|---:|---|", index_row, train_row]
    return "\n".join([header, "", *table, ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    from occreid.data.synthocc import generate

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        root = work / "synthocc"
        generate(root, preset="small", seed=0, protocol="occluded", workers=2, progress=False)
        ((code, err),) = finish([occreid(*train_args(root, work / "model"), cwd=work)])
        assert code == 0, err
        index = index_case(work, root, work / "model" / "last.pt", args.repeats)
        train = train_case(work, root, args.repeats)
    text = report(index, train, args.repeats, time.perf_counter() - started)
    print(text)
    if args.repeats >= 10:
        RESULTS.write_text(text)
        print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
