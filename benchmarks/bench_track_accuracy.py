"""Cross-camera track retrieval on synthetic recordings: one random crop per track vs the mean of K crops vs
max-over-crops re-scoring, with the demo's trained Baseline (CNN) and OGFR (hybrid ViT) models.

Per seed: `occreid synth-video` with 3 cameras, 20 people, 150 frames at 640 x 360 (that seed), every camera's
ground-truth tracks ingested as `occreid index build --tracks` does (K = 8 crops a track, decoded from the
H.264 video). Every track is a query; its gallery is every track of the other cameras; a match is the same
person. Rank-1 and mAP (mean over queries) per seed; the table gives the mean over seeds with a 95%
t-interval, and the paired difference of each scoring against the mean of K (same seed, same tracks).

    python benchmarks/bench_track_accuracy.py --demo runs/demo   # seeds 0 1 2, both demo models
    python benchmarks/bench_track_accuracy.py --seeds 0 --quick  # 40 frames, 8 people: checks the script runs
    python benchmarks/bench_track_accuracy.py --models Baseline "ViT baseline" --name vit  # other models

Writes benchmarks/results/bench_track_accuracy[_NAME].{json,md} (not with --quick).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
# Each model's run folder inside an `occreid demo --out DIR` folder (--demo).
MODELS = {
    "Baseline": "baseline",
    "OGFR": "ogfr",
    "ViT baseline": "vit_baseline",  # OGFR's backbone without OGFR (--models to add it)
}
SCORINGS = ("one random crop", "mean of K (default)", "max over crops")
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def distances(index, scoring: str, rng: np.random.Generator) -> np.ndarray:
    """(N, N) cosine distances between the index's tracks under one scoring."""
    from occreid.retrieval.track_index import normalise

    if scoring.startswith("mean"):
        f = index.features
        return 1.0 - f @ f.T
    crops = normalise(index.crop_features)
    if scoring.startswith("one"):
        pick = np.asarray([rng.integers(a, b) for a, b in zip(index.crop_start[:-1], index.crop_start[1:])])
        f = crops[pick]
        return 1.0 - f @ f.T
    sims = crops @ crops.T
    starts = index.crop_start[:-1]
    best = np.maximum.reduceat(np.maximum.reduceat(sims, starts, axis=0), starts, axis=1)
    return 1.0 - best


def rank1_map(dist: np.ndarray, people: np.ndarray, cameras: np.ndarray) -> tuple[float, float]:
    """Cross-camera retrieval: each query against the tracks of the other cameras (stable sort on ties)."""
    rank1, aps = [], []
    for q in range(len(dist)):
        others = np.flatnonzero(cameras != cameras[q])
        order = others[np.argsort(dist[q, others], kind="stable")]
        hits = people[order] == people[q]
        if not hits.any():
            continue
        rank1.append(float(hits[0]))
        positions = np.flatnonzero(hits) + 1
        aps.append(float(np.mean(np.arange(1, len(positions) + 1) / positions)))
    return float(np.mean(rank1)), float(np.mean(aps))


def index_seed(folder: Path, checkpoint: Path):
    from occreid.inference import FeatureExtractor
    from occreid.retrieval import GallerySettings, TrackIndex, ingest, open_recording

    extractor = FeatureExtractor.from_checkpoint(checkpoint, device="cpu", progress=False)
    index, keep = TrackIndex(), GallerySettings(crop_features=True)  # one random crop and max need them
    for cam in sorted(folder.glob("cam*")):
        recording = open_recording(cam / "gt/gt.txt", video=cam / "video.mp4")
        part, _ = ingest(cam.name, recording, extractor, keep)
        index = index.extend(part)
    return index


def run(seeds: list[int], quick: bool) -> dict:
    from occreid.data.recordings import SynthVideoSettings, synth_video

    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="track_accuracy_") as tmp:
        for seed in seeds:
            settings = SynthVideoSettings(
                cameras=3, people=8 if quick else 20, frames=40 if quick else 150, seed=seed
            )
            folder = Path(tmp) / f"seed{seed}"
            synth_video(folder, settings)
            for name, checkpoint in MODELS.items():
                index = index_seed(folder, checkpoint)
                for scoring in SCORINGS:
                    dist = distances(index, scoring, np.random.default_rng(seed))
                    r1, mean_ap = rank1_map(dist, index.track, index.camera_code)
                    results.setdefault(name, {}).setdefault(scoring, []).append(
                        {"seed": seed, "rank1": r1, "mAP": mean_ap, "tracks": len(index)}
                    )
                    print(
                        f"seed {seed} {name:<8} {scoring:<20} Rank-1 {r1:.3f} mAP {mean_ap:.3f} "
                        f"({len(index)} tracks)"
                    )
    return results


def _ci(values: list[float]) -> str:
    mean = statistics.fmean(values)
    if len(values) < 2:
        return f"{100 * mean:.1f}"
    half = T95[len(values) - 1] * statistics.stdev(values) / len(values) ** 0.5
    return f"{100 * mean:.1f} ± {100 * half:.1f}"


def table(results: dict, seeds: list[int]) -> str:
    lines = [
        "# Cross-camera track retrieval on synthetic recordings",
        "",
        f"3 cameras, 20 people, 150 frames at 640x360 per seed; seeds {', '.join(map(str, seeds))}; K = 8 "
        "crops a track from the H.264 video; the demo's trained models. Mean over seeds ± 95% t-interval "
        "(Rank-1 and mAP in %); Δ: paired difference to the mean of K on the same seed.",
        "",
        "| model | scoring | Rank-1 | mAP | Δ Rank-1 | Δ mAP |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for name, by in results.items():
        base = by[SCORINGS[1]]
        for scoring, rows in by.items():
            r1, ap = [r["rank1"] for r in rows], [r["mAP"] for r in rows]
            d1 = [a["rank1"] - b["rank1"] for a, b in zip(rows, base)]
            dap = [a["mAP"] - b["mAP"] for a, b in zip(rows, base)]
            delta = ("", "") if scoring == SCORINGS[1] else (_ci(d1), _ci(dap))
            lines.append(f"| {name} | {scoring} | {_ci(r1)} | {_ci(ap)} | {delta[0]} | {delta[1]} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--models", nargs="+", default=["Baseline", "OGFR"], choices=list(MODELS))
    parser.add_argument("--name", default="", help="suffix of the results files")
    parser.add_argument("--demo", type=Path, default=Path("runs/demo"), help="the `occreid demo` folder")
    args = parser.parse_args()
    for name in list(MODELS):
        if name in args.models:
            MODELS[name] = args.demo / MODELS[name] / "last.pt"
        else:
            del MODELS[name]
    results = run(args.seeds, args.quick)
    text = table(results, args.seeds)
    print(text)
    if not args.quick:
        stem = "bench_track_accuracy" + (f"_{args.name}" if args.name else "")
        (RESULTS / f"{stem}.json").write_text(json.dumps(results, indent=1))
        (RESULTS / f"{stem}.md").write_text(text)


if __name__ == "__main__":
    main()
