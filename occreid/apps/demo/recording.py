"""The demo's last step: a short synthetic 3-camera recording, indexed as a gallery of tracks with the demo's
OGFR model, and the `occreid serve` command that browses it (docs/recordings.md)."""

from __future__ import annotations

import shlex
import time
from pathlib import Path

from occreid.data.recordings import SynthVideoSettings, synth_video
from occreid.data.recordings.synth import video_codec

RECORDING = SynthVideoSettings(cameras=3, people=8, frames=60, fps=10)
SEARCH_MODEL = "ogfr"  # the demo model that embeds the gallery


def index_recording(
    out: Path, checkpoint: Path, seed: int = 0, settings: SynthVideoSettings = RECORDING
) -> Path:
    """Render <out>/recording (replacing only an earlier synth-video output there), index every camera's
    ground-truth tracks with `checkpoint` into <out>/recording/tracks.npz and return that path."""
    from occreid.inference import FeatureExtractor
    from occreid.inference.models import load_inference_model
    from occreid.retrieval import TrackIndex, index_settings, ingest, open_recording

    folder = Path(out) / "recording"
    synth_video(folder, SynthVideoSettings(**{**settings.__dict__, "seed": seed}), overwrite=True)
    loaded = load_inference_model(checkpoint, device="cpu")
    extractor = FeatureExtractor.for_model(loaded, device="cpu", progress=False)
    index = TrackIndex(meta=index_settings(loaded))
    with_video = video_codec() is not None
    for number in range(1, settings.cameras + 1):
        cam = folder / f"cam{number}"
        frames = {"video": cam / "video.mp4"} if with_video else {"frames": cam / "img1"}
        part, _ = ingest(f"cam{number}", open_recording(cam / "gt" / "gt.txt", **frames), extractor)
        index = index.extend(part)
    return index.save(folder / "tracks.npz")


def serve_command(out: Path, index: Path, runs: list[Path]) -> str:
    checkpoint = Path(out) / SEARCH_MODEL / "last.pt"
    words = ["occreid", "serve", "--index", str(index), "--checkpoint", str(checkpoint)]
    for run in runs:
        words += ["--run", str(run)]
    return shlex.join(words)


def demo_recording_step(out: Path, seed: int, runs: dict[str, Path]) -> str:
    """Index the demo recording with the OGFR run's model; returns the line that says how to browse it."""
    started = time.perf_counter()
    index = index_recording(out, runs[SEARCH_MODEL] / "last.pt", seed)
    return (
        f"gallery of tracks: {index} ({time.perf_counter() - started:.0f} s); browse and search it with\n"
        f"  {serve_command(out, index, list(runs.values()))}"
    )
