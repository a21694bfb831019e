"""Camera recordings on the command line: `occreid synth-video`, and the track side of `occreid index
build|add --tracks` and `occreid search --camera/--track` (occreid.cli.evaluation calls these)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import typer

from occreid.errors import OccreidError


def synth_video(
    out: Path = typer.Option(
        ..., "--out", help="Folder to write: one MOT folder per camera (cam1, cam2, ...)."
    ),
    cameras: int = typer.Option(3, help="Cameras (>= 2); every person walks through at least 2."),
    people: int = typer.Option(8, help="People (identities), drawn by SynthOcc's renderer."),
    frames: int = typer.Option(120, help="Frames per camera."),
    fps: int = typer.Option(10, help="Frame rate written to seqinfo.ini and the video."),
    seed: int = typer.Option(0, help="The same seed gives the same files."),
    width: int = typer.Option(640, help="Frame width in pixels."),
    height: int = typer.Option(360, help="Frame height in pixels."),
    overwrite: bool = typer.Option(
        False, help="Replace a folder that synth-video wrote before (never others)."
    ),
) -> None:
    """Render synthetic camera recordings with ground truth, in the MOTChallenge layout."""
    from occreid.data.recordings import SynthVideoSettings
    from occreid.data.recordings import synth_video as render

    settings = SynthVideoSettings(cameras, people, frames, fps, seed, width, height)
    summary = render(out, settings, overwrite=overwrite)
    video = (
        f"video.mp4 ({summary['codec']})"
        if summary["codec"]
        else 'no video (pip install -e ".[video]" for H.264)'
    )
    rows = ", ".join(f"{cam} {n}" for cam, n in summary["gt_rows"].items())
    typer.echo(f"wrote {out}: {cameras} cameras x {frames} frames, {people} people; gt rows {rows}; {video}")


def _extractor(loaded: Any, device: str, batch_size: int | None):
    from occreid.inference import FeatureExtractor

    return FeatureExtractor.for_model(loaded, device=device, batch_size=batch_size, progress=False)


def ingest_camera(
    extractor: Any,
    camera: str | None,
    tracks: Path,
    video: Path | None,
    frames: Path | None,
    fps: float | None,
    crops_per_track: int | None,
    crop_features: bool = False,
):
    """A one-camera TrackIndex of a recording, with a line about it; warns about clipped boxes."""
    from occreid.retrieval import GallerySettings, ingest, open_recording

    if not camera:
        raise OccreidError(
            "--camera NAME is required with --tracks: the camera's name in the index, e.g. cam1"
        )
    settings = GallerySettings(crop_features=crop_features)
    if crops_per_track is not None:
        settings = replace(settings, crops_per_track=crops_per_track)
    recording = open_recording(tracks, video=video, frames=frames, fps=fps)
    if recording.tracks.clipped:
        typer.secho(
            f"warning: {recording.tracks.clipped} boxes in {tracks} reach outside the frame; clipped to it",
            err=True,
        )
    part, report = ingest(camera, recording, extractor, settings)
    rate = report.crops / max(report.seconds, 1e-9)
    typer.echo(
        f"{camera}: {report.tracks} tracks, {report.crops} crops from {report.frames_read} frames in "
        f"{report.seconds:.1f} s ({rate:.0f} crops/s)"
    )
    return part


def build_track_index(
    loaded: Any,
    settings: dict[str, Any],
    out: Path,
    device: str,
    batch_size: int | None,
    recording: dict[str, Any],
) -> None:
    """`occreid index build --tracks ...`: a new track index with one camera embedded by `loaded` (an
    occreid.inference.models.InferenceModel), written under the index's lock. `recording` holds camera,
    tracks, video, frames, fps, crops_per_track, crop_features; `settings` is what the index records about the
    model."""
    from occreid.retrieval import TrackIndex
    from occreid.utils.locks import file_lock, lock_path_for

    extractor = _extractor(loaded, device, batch_size)
    with file_lock(lock_path_for(out), what=f"the index {out}"):
        part = ingest_camera(extractor, **recording)
        index = TrackIndex(meta=settings).extend(part)
        index.save(out)
    typer.echo(f"indexed {len(index)} tracks of {recording['camera']} ({index.dim}-d, cosine) -> {out}")


def add_track_index(
    model_for: Any,
    index_path: Path,
    device: str,
    batch_size: int | None,
    replace_camera: bool,
    recording: dict[str, Any],
) -> None:
    """`occreid index add --tracks ...`: one more camera in a track index (read, extended and written under
    the index's lock). `model_for(index)` gives the index's model, or raises when the one given differs."""
    from occreid.retrieval import TrackIndex
    from occreid.utils.locks import file_lock, lock_path_for

    camera = recording["camera"]
    with file_lock(lock_path_for(index_path), what=f"the index {index_path}"):
        index = TrackIndex.load(index_path)
        if camera in index.cameras and not replace_camera:
            raise OccreidError(
                f"camera {camera!r} is already in {index_path}; pass --replace-camera to replace its tracks, "
                "or give this recording another --camera name"
            )
        extractor = _extractor(model_for(index), device, batch_size)
        part = ingest_camera(extractor, **recording, crop_features=index.keeps_crop_features)
        if camera in index.cameras:
            index = index.without_camera(camera)
        index = index.extend(part)
        index.save(index_path)
    typer.echo(f"added {len(part)} tracks of {camera}; {index_path} now holds {len(index)} tracks")


def print_results(answer: dict[str, Any], as_json: bool, total: int) -> None:
    """A search answer as JSON (one line) or as a table."""
    if as_json:
        typer.echo(json.dumps(answer))
        return
    query = answer["query"]
    what = f"track {query['track']} of {query['camera']}" if isinstance(query, dict) else str(query)
    typer.echo(f"query {what}  (cosine distance, {total} gallery tracks)")
    for rank, r in enumerate(answer["results"], start=1):
        span = "" if r["seconds"] is None else f"  {r['seconds'][0]:.1f}-{r['seconds'][1]:.1f} s"
        typer.echo(
            f"{rank:>4}  {r['distance']:8.4f}  {r['camera']:<10} track {r['track']:<6} "
            f"frames {r['first_frame']}-{r['last_frame']}{span}"
        )


def register(app: typer.Typer) -> None:
    app.command("synth-video")(synth_video)
