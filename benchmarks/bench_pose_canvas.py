"""Detection rate of the mediapipe estimator with one square black canvas (before) and with its canvas
fallback (after: `CANVASES`, best-scoring result kept), on every real person crop the installed packages ship
and on SynthOcc's partial (upper-body) queries.

Real crops: scikit-image's astronaut (a crop of 320 x 512 from the left of the photo, resized to
128 x 256 and saved as JPEG) and cameraman, and the people in ultralytics' bus.jpg and zidane.jpg (when
ultralytics is installed, or `--ultralytics-assets DIR`); each at 128 x 256 and at Market-1501's 64 x 128.

    python benchmarks/bench_pose_canvas.py [--out benchmarks/results/bench_pose_canvas.md]
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

# Person boxes (x0, y0, x1, y1) drawn by hand on the photos.
BUS_PEOPLE = [(45, 395, 250, 905), (215, 400, 350, 865), (665, 390, 810, 880), (0, 550, 80, 875)]
ZIDANE_PEOPLE = [(120, 195, 1150, 720), (745, 40, 1145, 720)]


def _jpeg(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(array).convert("RGB").resize(size, Image.BILINEAR).save(buffer, "JPEG", quality=90)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


def real_crops(ultralytics_assets: Path | None) -> dict[str, np.ndarray]:
    from skimage import data

    photos: dict[str, tuple[np.ndarray, list[tuple[int, int, int, int]]]] = {
        "astronaut": (data.astronaut(), [(96, 0, 416, 512)]),
        "cameraman": (np.stack([data.camera()] * 3, -1), [(0, 60, 330, 512)]),
    }
    if ultralytics_assets is None:
        try:
            import ultralytics

            ultralytics_assets = Path(ultralytics.__file__).parent / "assets"
        except ImportError:
            print(
                "ultralytics is not installed: its bus.jpg and zidane.jpg are skipped (or pass "
                "--ultralytics-assets)"
            )
    if ultralytics_assets is not None:
        for name, boxes in (("bus", BUS_PEOPLE), ("zidane", ZIDANE_PEOPLE)):
            photos[name] = (np.asarray(Image.open(ultralytics_assets / f"{name}.jpg").convert("RGB")), boxes)
    crops = {}
    for name, (photo, boxes) in photos.items():
        for i, (x0, y0, x1, y1) in enumerate(boxes):
            crop = photo[y0:y1, x0:x1]
            for size in ((128, 256), (64, 128)):
                crops[f"{name} {i} {size[0]}x{size[1]}"] = _jpeg(crop, size)
    return crops


def synthocc_partial_crops(folder: Path) -> dict[str, np.ndarray]:
    from occreid.data.synthocc import generate

    generate(folder, preset="small", seed=0, protocol="partial", workers=2, progress=False)
    annotations = json.loads((folder / "annotations.json").read_text())
    return {
        rel: np.asarray(Image.open(folder / rel).convert("RGB"))
        for rel, ann in sorted(annotations.items())
        if rel.startswith("query/") and ann.get("partial")
    }


def main() -> None:
    from occreid.pose.estimators.base import has_pose
    from occreid.pose.estimators.mediapipe import CANVASES, MediaPipePose, pose_score

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ultralytics-assets", type=Path, default=None)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "bench_pose_canvas.md"
    )
    args = parser.parse_args()

    detail_scores: dict[str, dict[str, float]] = {}
    sets = {"real person crops": real_crops(args.ultralytics_assets)}
    with tempfile.TemporaryDirectory() as tmp:
        sets["SynthOcc partial (upper-body) queries"] = synthocc_partial_crops(Path(tmp) / "partial")
    lines = [
        "# mediapipe: detection rate by canvas",
        "",
        f"`python benchmarks/bench_pose_canvas.py`, {time.strftime('%Y-%m-%d')}. A crop counts as detected "
        "when any keypoint has a confidence above 0. The timings are wall time per crop on a 2-core CPU and "
        "vary with its load. The fallback tries up to 4 canvases, stopping at the first that scores 0.8 "
        "(mean keypoint confidence), so it costs most on crops where the first canvases find nobody.",
        "",
    ]
    estimators = {
        "before: square black canvas only": MediaPipePose(canvases=("square",)),
        f"after: {' -> '.join(CANVASES)}, best kept": MediaPipePose(),
    }
    per_canvas = MediaPipePose(canvases=("square",))
    lines += [
        "| crops | n | "
        + " | ".join(estimators)
        + " | "
        + " | ".join(f"`{c}` alone" for c in CANVASES)
        + " |",
        "|---|---|" + "---|" * (len(estimators) + len(CANVASES)),
    ]
    detail = [
        "",
        "## Real crops, mean keypoint confidence per canvas (0: nobody found)",
        "",
        "| crop | " + " | ".join(CANVASES) + " | after |",
        "|---|" + "---|" * (len(CANVASES) + 1),
    ]
    for set_name, crops in sets.items():
        rates, seconds = [], []
        for est in estimators.values():
            start = time.perf_counter()
            found = [has_pose(est.predict_one(image)) for image in crops.values()]
            seconds.append((time.perf_counter() - start) / len(crops))
            rates.append(f"{np.mean(found):.0%} ({sum(found)}/{len(found)}), {1000 * seconds[-1]:.0f} ms/img")
        alone = []
        for kind in CANVASES:
            scores = {
                name: pose_score(per_canvas.predict_on_canvas(image, kind)) for name, image in crops.items()
            }
            alone.append(f"{np.mean([s > 0 for s in scores.values()]):.0%}")
            if set_name == "real person crops":
                for name, score in scores.items():
                    detail_scores.setdefault(name, {})[kind] = score
        lines.append(f"| {set_name} | {len(crops)} | " + " | ".join(rates) + " | " + " | ".join(alone) + " |")
    after = list(estimators.values())[1]
    for name, scores in detail_scores.items():
        final = pose_score(after.predict_one(sets["real person crops"][name]))
        detail.append(f"| {name} | " + " | ".join(f"{scores[k]:.2f}" for k in CANVASES) + f" | {final:.2f} |")
    for est in [*estimators.values(), per_canvas]:
        est.close()
    text = "\n".join(lines + detail) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
