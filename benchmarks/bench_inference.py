"""Deployed inference on the CPU, end to end from JPEG files: torch eager vs ONNX Runtime fp32 vs int8.

Models: the demo's deployed models (`occreid demo --out DEMO`: the MobileNetV2 Baseline and the OGFR student,
where trained), speed and SynthOcc mAP; ResNet-50 and ViT-B/16 at 256 x 128 with random weights, speed only.
Backends, each from the same list of JPEG paths to (N, D) features at batch 64:

- "torch eager (start)": the `FeatureExtractor` of the code this work starts from (its extractor.py, loaded
  from --base, e.g. `git archive 7bf3c2b occreid | tar -x -C /tmp/base19`), on the same torch module;
- "torch (now)": today's FeatureExtractor with the .pt (decode thread pool overlapped with the model);
- "onnx fp32" / "onnx int8" / "onnx int8 dynamic": `occreid export` / `occreid export --int8` /
  `occreid export --int8 --quantization dynamic` files through FeatureExtractor.

How: one process; each round runs every backend once, in turn (interleaved); the median of --runs rounds
(>= 5) after one warm-up; torch and ONNX Runtime both get --threads intra-op threads. mAP: `occreid eval`'s
pipeline (the test loader) on the demo's SynthOcc test split, per backend file (torch: the .pt).
A second table times the input pipelines alone (decode, resize to 256 x 128, normalise): PIL in one thread,
PIL in a thread pool, PIL in worker processes (FeatureExtractor's, for files), torchvision.io.decode_jpeg +
resize on tensors, the test DataLoader.

    python benchmarks/bench_inference.py --demo runs/demo --base /tmp/base19   # writes
        benchmarks/results/bench_inference.md
    python benchmarks/bench_inference.py --quick --models baseline ...  # 64 images, 2 runs; no results file
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

BATCH = 64


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--demo", type=Path, default=Path("runs/demo"))
    p.add_argument("--base", type=Path, required=True, help="folder holding the starting code's occreid/")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--images", type=int, default=512, help="JPEGs per timed run for the demo models")
    p.add_argument("--large-images", type=int, default=256, help="JPEGs per run for ResNet-50 / ViT-B")
    p.add_argument(
        "--models", default="baseline,ogfr,ogfr_random,resnet50,vit_base_patch16", help="comma-separated"
    )
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "bench_inference.md")
    p.add_argument("--quick", action="store_true")
    return p.parse_args()


def base_extractor_class(base: Path):
    """FeatureExtractor as the starting code defines it (its helpers come from today's occreid: same API)."""
    spec = importlib.util.spec_from_file_location("base_extractor", base / "occreid/inference/extractor.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.FeatureExtractor


def occreid(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "occreid", *args], capture_output=True, text=True)


def exports(ckpt: Path, folder: Path, calibration: Path) -> dict[str, Path]:
    name = ckpt.parent.name
    files = {
        "onnx fp32": folder / f"{name}.onnx",
        "onnx int8": folder / f"{name}-int8.onnx",
        "onnx int8 dynamic": folder / f"{name}-int8-dynamic.onnx",
    }
    int8 = ["--checkpoint", str(ckpt), "--int8", "--calibration", str(calibration)]
    for done in (
        occreid("export", "--checkpoint", str(ckpt), "--out", str(files["onnx fp32"])),
        occreid("export", *int8, "--out", str(files["onnx int8"])),
        occreid("export", *int8, "--quantization", "dynamic", "--out", str(files["onnx int8 dynamic"])),
    ):
        if done.returncode:  # dynamic int8 refuses CNNs: that cell stays empty
            print(f"{ckpt.parent.name}: {done.stderr.strip().splitlines()[-1]}", flush=True)
    return {name: path for name, path in files.items() if path.is_file()}


def backends(ckpt: Path, files: dict[str, Path], base_cls, threads: int) -> dict:
    from occreid.inference.extractor import FeatureExtractor
    from occreid.inference.models import load_inference_model

    loaded = load_inference_model(ckpt, device="cpu")
    start = base_cls(
        loaded.model,
        image_size=loaded.image_size,
        mean=loaded.mean,
        std=loaded.std,
        batch_size=BATCH,
        device="cpu",
        flip=loaded.flip,
        progress=False,
    )
    out = {"torch eager (start)": start}
    out["torch (now)"] = FeatureExtractor.for_model(loaded, device="cpu", batch_size=BATCH, progress=False)
    for name, path in files.items():
        model = load_inference_model(path, device="cpu", threads=threads)
        out[name] = FeatureExtractor.for_model(model, device="cpu", batch_size=BATCH, progress=False)
    return out


def interleaved(runners: dict, paths: list[str], runs: int) -> dict[str, float]:
    """Median images/s of each runner over `runs` interleaved rounds, after one warm-up each."""
    for run in runners.values():
        run(paths[:BATCH])
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(runs):
        for name, run in runners.items():
            t0 = time.perf_counter()
            run(paths)
            times[name].append(time.perf_counter() - t0)
    return {name: len(paths) / statistics.median(t) for name, t in times.items()}


def demo_maps(ckpt: Path, files: dict[str, Path], synth: Path) -> dict[str, float]:
    from occreid.inference.evaluate import deployed_config, evaluate_deployed
    from occreid.inference.models import load_inference_model

    maps = {}
    for name, path in {"torch (now)": ckpt, **files}.items():
        loaded = load_inference_model(path, device="cpu")
        output, _ = evaluate_deployed(loaded, deployed_config(loaded, "synthocc", synth))
        maps[name] = output.result.mAP * 100
    maps["torch eager (start)"] = maps["torch (now)"]  # the same model through the same test loader
    return maps


RANDOM = {  # models with random weights, speed only: (config file or None, overrides)
    "resnet50": (None, ["model.name=baseline", "model.backbone=resnet50", "data.image_size=[256,128]"]),
    "vit_base_patch16": (
        None,
        ["model.name=baseline", "model.backbone=vit_base_patch16", "data.image_size=[256,128]"],
    ),
    "ogfr_random": (
        Path(__file__).parents[1] / "occreid/configs/demo/ogfr.yaml",
        [],
    ),  # the demo's OGFR student
    "baseline_random": (Path(__file__).parents[1] / "occreid/configs/demo/baseline.yaml", []),  # the demo CNN
}


def random_checkpoint(key: str, folder: Path) -> Path:
    from occreid.config import load_config
    from occreid.methods import build_model
    from occreid.modeling.checkpoint import save_checkpoint

    config, sets = RANDOM[key]
    cfg = load_config(config, [*sets, "model.pretrained=false", "eval.flip=false"])
    torch.manual_seed(0)
    method = build_model(cfg, num_classes=10).eval()
    ckpt = folder / key / "random.pt"
    ckpt.parent.mkdir(parents=True)
    save_checkpoint(
        ckpt, {"model": method.state_dict(), "config": cfg.model_dump(mode="json"), "num_classes": 10}
    )
    return ckpt


def pipelines(paths: list[str], size: tuple[int, int], runs: int) -> dict[str, float]:
    """Images/s of decode + resize + normalise alone, for each input pipeline."""
    from torchvision.io import decode_jpeg, read_file
    from torchvision.transforms.v2 import functional as F

    from occreid.config import load_config
    from occreid.data.loaders import build_test_loader
    from occreid.data.records import ImageRecord
    from occreid.inference.extractor import FeatureExtractor

    def extractor(workers: int):  # FeatureExtractor's own: files decoded by `workers` processes
        ex = FeatureExtractor(
            torch.nn.Identity(), image_size=size, batch_size=BATCH, workers=workers, device="cpu"
        )
        return lambda p: list(ex._image_batches(p))

    def threads(workers: int):  # the same decoding in a pool of threads
        ex = FeatureExtractor(torch.nn.Identity(), image_size=size, batch_size=BATCH, device="cpu")

        def run(p):
            with ThreadPoolExecutor(workers) as pool:
                return [
                    torch.stack(list(pool.map(ex._load, p[s : s + BATCH]))) for s in range(0, len(p), BATCH)
                ]

        return run

    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255

    def tv(p):
        out = []
        for s in range(0, len(p), BATCH):
            images = decode_jpeg([read_file(x) for x in p[s : s + BATCH]])
            resized = [
                F.resize(im, list(size), interpolation=F.InterpolationMode.BICUBIC, antialias=True)
                for im in images
            ]
            out.append((torch.stack(resized).float() - mean) / std)
        return out

    cfg = load_config(None, [f"data.image_size=[{size[0]},{size[1]}]", "data.num_workers=2"])
    records = [ImageRecord(path=x, pid=0, camid=0) for x in paths]

    def loader(p):
        return [b["images"] for b in build_test_loader(cfg, records[: len(p)], batch_size=BATCH)]

    runners = {"PIL, 1 thread": extractor(0), "PIL, 2 threads": threads(2), "PIL, 4 threads": threads(4)}
    runners.update({"PIL, 2 processes (FeatureExtractor)": extractor(2), "PIL, 4 processes": extractor(4)})
    runners.update({"torchvision decode_jpeg + resize": tv, "test DataLoader (2 workers)": loader})
    return interleaved(runners, paths, runs)


def table(rows: dict[str, dict[str, float]], maps: dict[str, dict[str, float]]) -> str:
    names = ["torch eager (start)", "torch (now)", "onnx fp32", "onnx int8", "onnx int8 dynamic"]
    lines = ["| model | " + " | ".join(names) + " | fastest / start |", "|---|" + "---:|" * (len(names) + 1)]
    for model, speeds in rows.items():
        cells = []
        for n in names:
            m = maps.get(model, {}).get(n)
            speed = f"{speeds[n]:.0f}" if n in speeds else "-"
            cells.append(speed + (f" (mAP {m:.2f})" if m is not None else ""))
        lines.append(
            f"| {model} | " + " | ".join(cells) + f" | {max(speeds.values()) / speeds[names[0]]:.2f}x |"
        )
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    if args.quick:
        args.images, args.runs = 64, 2
    torch.set_num_threads(args.threads)
    load = os.getloadavg()
    synth = args.demo / "synthocc"
    jpegs = sorted(str(p) for p in (synth / "bounding_box_test").glob("*.jpg"))
    base_cls = base_extractor_class(args.base)
    rows, maps = {}, {}
    with tempfile.TemporaryDirectory(prefix="bench-inference-") as tmp:
        chosen = args.models.split(",")
        models = [(k, args.demo / k / "best.pt") for k in ("baseline", "ogfr") if k in chosen]
        models = [(k, c if c.is_file() else c.with_name("last.pt")) for k, c in models]
        models += [(b, random_checkpoint(b, Path(tmp))) for b in RANDOM if b in chosen]
        for key, ckpt in models:
            if not ckpt.is_file():
                print(f"skipping {key}: no {ckpt}", flush=True)
                continue
            files = exports(ckpt, Path(tmp), synth / "bounding_box_train")
            n = args.large_images if key in ("resnet50", "vit_base_patch16") else args.images
            rows[key] = interleaved(backends(ckpt, files, base_cls, args.threads), jpegs[:n], args.runs)
            if key in ("baseline", "ogfr"):
                maps[key] = demo_maps(ckpt, files, synth)
            print(key, {k: round(v) for k, v in rows[key].items()}, maps.get(key), flush=True)
        inputs = pipelines(jpegs[: args.images], (256, 128), args.runs)
    report = [
        f"# Deployed inference, end to end from JPEG files (batch {BATCH}, {args.threads} threads)",
        "",
        f"Images/s, median of {args.runs} interleaved runs ({args.images} SynthOcc test JPEGs for the demo "
        f"models, {args.large_images} for ResNet-50 / ViT-B/16 at 256 x 128, random weights); mAP on the "
        f"SynthOcc test split (%). {os.cpu_count()} CPUs; 1-min load average {load[0]:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after (other jobs slow every backend, torch eager the most).",
        "",
        table(rows, maps),
        "",
        f"Input pipeline alone (decode + resize to 256 x 128 + normalise, {args.images} JPEGs), images/s:",
        "",
        "| pipeline | images/s |",
        "|---|---:|",
        *[f"| {k} | {v:.0f} |" for k, v in inputs.items()],
        "",
        f"torch {torch.__version__}, {args.threads} intra-op threads (torch and ONNX Runtime); "
        f"command: python benchmarks/bench_inference.py {' '.join(sys.argv[1:])}",
    ]
    text = "\n".join(report) + "\n"
    print(text)
    if not args.quick:
        args.out.write_text(text)
        print(f"written to {args.out}")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
