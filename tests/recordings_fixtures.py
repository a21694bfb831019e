"""Small real recordings and track indexes for tests: `make_track_index(tmp_path)` renders a 3-camera
synthetic recording (`occreid synth-video`), saves a random-weight ResNet-18 checkpoint and indexes every
camera with `occreid index build` / `index add`, as a user would. A few seconds on one core."""

from __future__ import annotations

from pathlib import Path

import torch
from typer.testing import CliRunner

SMALL = {"cameras": 3, "people": 5, "frames": 24, "fps": 10, "seed": 0, "width": 320, "height": 180}
CHECKPOINT_OVERRIDES = [
    "model.name=baseline",
    "model.backbone=resnet18",
    "model.pretrained=false",
    "data.image_size=[64,32]",
    "eval.batch_size=32",
]


def make_recording(out: Path, **settings) -> Path:
    """A synthetic recording (SMALL unless overridden) in `out`; returns `out`."""
    from occreid.data.recordings import SynthVideoSettings, synth_video

    synth_video(out, SynthVideoSettings(**{**SMALL, **settings}))
    return out


def make_checkpoint(path: Path, seed: int = 0) -> Path:
    """A random-weight baseline ResNet-18 checkpoint for 64 x 32 images."""
    from occreid.config import load_config
    from occreid.methods import build_model
    from occreid.modeling.checkpoint import save_checkpoint

    cfg = load_config(None, CHECKPOINT_OVERRIDES)
    torch.manual_seed(seed)
    method = build_model(cfg, num_classes=5).eval()
    save_checkpoint(
        path, {"model": method.state_dict(), "config": cfg.model_dump(mode="json"), "num_classes": 5}
    )
    return path


def run_cli(*args: str) -> str:
    from occreid.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exit_code != 0:
        raise AssertionError(
            f"occreid {' '.join(map(str, args))} failed: {result.output} {result.exception!r}"
        )
    return result.output


def make_track_index(tmp_path: Path, source: str = "video", crop_features: bool = False) -> Path:
    """`tmp_path/tracks.npz`: the 3 cameras of a SMALL recording (`tmp_path/recording`), embedded with
    `tmp_path/model.pt` (recorded in the index, so image queries work). `source`: "video" or "frames";
    `crop_features`: build with --crop-features (the cameras added after the first follow the index)."""
    recording = make_recording(tmp_path / "recording")
    checkpoint = make_checkpoint(tmp_path / "model.pt")
    index = tmp_path / "tracks.npz"
    for number in range(1, SMALL["cameras"] + 1):
        cam = recording / f"cam{number}"
        frames = ["--video", cam / "video.mp4"] if source == "video" else ["--frames", cam / "img1"]
        common = ["--camera", f"cam{number}", "--tracks", cam / "gt" / "gt.txt", *frames, "--device", "cpu"]
        if number == 1:
            keep = ["--crop-features"] if crop_features else []
            run_cli("index", "build", "--checkpoint", checkpoint, "--out", index, *common, *keep)
        else:
            run_cli("index", "add", "--index", index, *common)
    return index
