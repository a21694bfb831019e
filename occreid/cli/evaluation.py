"""`occreid index build|add` and `occreid search`: embed a folder of images with a deployed checkpoint and
search it. (`occreid eval` lives with the engine.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from occreid.errors import OccreidError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}  # what the dataset loaders read

index_app = typer.Typer(help="Build and extend a searchable gallery index.", no_args_is_help=True)

# The recording options of `index build|add --tracks` (docs/recordings.md).
TRACKS = typer.Option(
    None, "--tracks", help="MOT track file (9 or 10 columns) of one camera; excludes --images."
)
VIDEO = typer.Option(None, "--video", help="The camera's video (decoded with PyAV); or --frames.")
FRAMES = typer.Option(None, "--frames", help="The camera's frame folder (000001.jpg, ...); or --video.")
CAMERA = typer.Option(None, "--camera", help="The camera's name in the index (with --tracks).")
FPS = typer.Option(None, "--fps", help="Frame rate, where no seqinfo.ini gives it (else the video's).")
CROPS = typer.Option(None, "--crops-per-track", help="Crops sampled per track (default 8).")


def _recording_options(tracks, video, frames, camera, fps, crops_per_track, images) -> dict[str, Any] | None:
    """The recording to index (--tracks ...), None for --images; they exclude each other."""
    if (images is None) == (tracks is None):
        raise OccreidError(
            "give --images DIR (a folder of images) or --tracks FILE (a camera's tracks), not both"
        )
    if tracks is None:
        given = [
            o for o, v in (("--video", video), ("--frames", frames), ("--camera", camera)) if v is not None
        ]
        if given:
            raise OccreidError(f"{given[0]} goes with --tracks, not with --images")
        return None
    keys = ("camera", "tracks", "video", "frames", "fps", "crops_per_track")
    return dict(zip(keys, (camera, tracks, video, frames, fps, crops_per_track)))


def _load_model(checkpoint: Path, runtime: str = "auto", device: str = "auto"):
    """The model of a checkpoint or .onnx file (occreid.inference.models.InferenceModel); a separate function
    so tests can patch it."""
    from occreid.inference.models import load_inference_model

    return load_inference_model(checkpoint, runtime=runtime, device=device)


RUNTIME_HELP = "auto (follows the file: .pt on torch, .onnx on ONNX Runtime), onnx or torch."


def list_images(folder: Path) -> list[Path]:
    """Image files under `folder`, recursively, sorted."""
    if not folder.is_dir():
        raise OccreidError(f"image folder not found: {folder}")
    images = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not images:
        raise OccreidError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {folder}")
    return images


def _settings(loaded: Any) -> dict[str, Any]:
    """What the index records about the model (occreid.retrieval.meta.index_settings)."""
    from occreid.retrieval.meta import index_settings

    return index_settings(loaded)


def _warn_if_resized_otherwise(index: Any, index_path: Path) -> None:
    """Indexes written before occreid recorded `resize` were embedded with bilinear resizing; queries and new
    rows are resized bicubically, as in training, so distances to those rows move by a few hundredths."""
    if "resize" not in index.meta:
        typer.echo(
            f"warning: {index_path} was embedded with an older, bilinear resize; distances to it are close, "
            "not exact: rebuild it (occreid index build ... --overwrite) for exact ones",
            err=True,
        )


def _index_model(index: Any, index_path: Path, hint: str, given: Path | None, runtime: str, device: str):
    """The model to embed with: `given` (--checkpoint) or the one the index records, or OccreidError
    "<index> records no checkpoint<hint>". When the index records a content hash, the model must have it: the
    checkpoint itself or an .onnx file exported from it."""
    recorded = index.meta.get("checkpoint")
    if given is None and not recorded:
        raise OccreidError(f"{index_path} records no checkpoint{hint}")
    checkpoint = Path(given) if given is not None else Path(recorded)
    expected = index.meta.get("checkpoint_sha256")
    if expected and given is None and not checkpoint.is_file():
        raise OccreidError(
            f"{index_path} was built with {checkpoint}, which is not there (moved or deleted); pass "
            "--checkpoint with that model's file"
        )
    loaded = _load_model(checkpoint, runtime, device)
    if expected and loaded.source_sha256 != expected:
        raise OccreidError(
            f"{checkpoint} is not the model {index_path} was built with (its content hash differs: "
            f"{'new weights at the recorded path' if given is None else 'other weights'}); pass "
            "--checkpoint with the original file or its export, or build a new index with `occreid index "
            "build --overwrite`"
        )
    return loaded


def _comparable(index: Any, settings: dict[str, Any]) -> dict[str, Any]:
    """The settings to compare with the index's: by content hash when it has one (so a moved checkpoint is
    still the same model), else by path as indexes did before hashes."""
    settings = {k: v for k, v in settings.items() if k != "precision"}
    if index.meta.get("checkpoint_sha256"):
        return {k: v for k, v in settings.items() if k != "checkpoint"}
    return {k: v for k, v in settings.items() if k != "checkpoint_sha256"}


def _extract(loaded: Any, images: list[Path], device: str, batch_size: int | None):
    from occreid.inference.extractor import FeatureExtractor

    extractor = FeatureExtractor.for_model(
        loaded, device=device, batch_size=batch_size, progress=len(images) > 1
    )
    return extractor([str(p) for p in images])


def index_build(
    checkpoint: Path = typer.Option(
        ..., "--checkpoint", help="Deployed model: a training checkpoint (.pt) or its export (.onnx)."
    ),
    images: Path | None = typer.Option(
        None, "--images", help="Folder of gallery images (searched recursively)."
    ),
    out: Path = typer.Option(..., "--out", help="Index file to write (.npz)."),
    tracks: Path | None = TRACKS,
    video: Path | None = VIDEO,
    frames: Path | None = FRAMES,
    camera: str | None = CAMERA,
    fps: float | None = FPS,
    crops_per_track: int | None = CROPS,
    crop_features: bool = typer.Option(
        False,
        "--crop-features",
        help="With --tracks: keep every crop's feature too, for --rescore max (K times the entry features' "
        "size; `index add` follows the index).",
    ),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:1, ..."),
    batch_size: int | None = typer.Option(
        None, help="Images per batch; default eval.batch_size of the config."
    ),
    overwrite: bool = typer.Option(False, help="Replace an existing index file."),
    runtime: str = typer.Option("auto", "--runtime", help=RUNTIME_HELP),
) -> None:
    """Embed every image under --images, or every track of one camera's recording (--tracks with --video or
    --frames, and --camera), and write a searchable index."""
    from occreid.evaluation.index import GalleryIndex, index_lock
    from occreid.utils.files import check_output_file

    recording = _recording_options(tracks, video, frames, camera, fps, crops_per_track, images)
    if recording is None and crop_features:
        raise OccreidError("--crop-features goes with --tracks (an image index keeps one feature per image)")
    if recording is not None:
        recording["crop_features"] = crop_features
    if out.suffix != ".npz":
        raise OccreidError(f"--out {out} must end in .npz")
    if out.exists() and not overwrite:
        raise OccreidError(f"{out} exists; use `occreid index add` to extend it or --overwrite to replace it")
    check_output_file(out, "--out", overwrite=True)
    if recording is not None:
        from occreid.cli.recordings import build_track_index

        loaded = _load_model(checkpoint, runtime, device)
        build_track_index(loaded, _settings(loaded), out, device, batch_size, recording)
        return
    paths = list_images(images)
    from occreid.data.images import check_images

    check_images(paths, "gallery")
    loaded = _load_model(checkpoint, runtime, device)
    features = _extract(loaded, paths, device, batch_size)
    index = GalleryIndex(metric=loaded.metric, normalize=loaded.normalize, meta=_settings(loaded))
    index.add(features, [str(p.resolve()) for p in paths])
    with index_lock(out):  # another build or add into --out at the same time: one wins, nothing mixed
        if out.exists() and not overwrite:
            raise OccreidError(f"{out} was created by another command meanwhile; use `occreid index add`")
        index.save(out)
    typer.echo(f"indexed {len(index)} images ({index.dim}-d {loaded.precision}, {index.metric}) -> {out}")


def index_add(
    index_path: Path = typer.Option(..., "--index", help="Existing index file (.npz)."),
    images: Path | None = typer.Option(
        None, "--images", help="Folder of images to add (searched recursively)."
    ),
    tracks: Path | None = TRACKS,
    video: Path | None = VIDEO,
    frames: Path | None = FRAMES,
    camera: str | None = CAMERA,
    fps: float | None = FPS,
    crops_per_track: int | None = CROPS,
    replace_camera: bool = typer.Option(False, help="Replace the tracks of a camera already in the index."),
    checkpoint: Path | None = typer.Option(
        None, "--checkpoint", help="Default: the one the index was built with (or give its .onnx export)."
    ),
    device: str = typer.Option("auto", help="auto, cpu, cuda, ..."),
    batch_size: int | None = typer.Option(
        None, help="Images per batch; default eval.batch_size of the config."
    ),
    runtime: str = typer.Option("auto", "--runtime", help=RUNTIME_HELP),
) -> None:
    """Embed the images under --images with the index's model and append them (already indexed paths are
    skipped), or the tracks of one more camera (--tracks, --video or --frames, --camera)."""
    from occreid.evaluation.index import GalleryIndex
    from occreid.retrieval import TrackIndex, load_index

    recording = _recording_options(tracks, video, frames, camera, fps, crops_per_track, images)
    index = load_index(index_path)
    if isinstance(index, TrackIndex) != (recording is not None):
        held, given = ("tracks", "--images") if isinstance(index, TrackIndex) else ("images", "--tracks")
        raise OccreidError(
            f"{index_path} holds {held}; {given} cannot be added to it (build a separate index)"
        )
    if recording is not None:
        from occreid.cli.recordings import add_track_index

        def model_for(loaded_index: Any) -> Any:  # the index's model, checked as for images
            loaded = _index_model(
                loaded_index, index_path, "; pass --checkpoint", checkpoint, runtime, device
            )
            GalleryIndex(meta=loaded_index.meta).check_compatible(
                _comparable(loaded_index, _settings(loaded))
            )
            return loaded

        add_track_index(model_for, index_path, device, batch_size, replace_camera, recording)
        return
    loaded = _index_model(index, index_path, "; pass --checkpoint", checkpoint, runtime, device)
    problem = index.precision_problem(loaded.precision)
    if problem:
        raise OccreidError(f"{problem}; one index never mixes them: add with a {index.precision} model")
    known = set(index.paths)
    paths = [p for p in list_images(images) if str(p.resolve()) not in known]
    if not paths:
        typer.echo(f"nothing to add: every image under {images} is already in {index_path}")
        return
    _warn_if_resized_otherwise(index, index_path)
    features = _extract(loaded, paths, device, batch_size)
    index.check_compatible(_comparable(index, _settings(loaded)))
    if (loaded.metric, loaded.normalize) != (index.metric, index.normalize):
        raise OccreidError(
            f"the index uses metric={index.metric}, normalize={index.normalize} but the model's settings "
            f"say metric={loaded.metric}, normalize={loaded.normalize}; build a new index"
        )
    new = GalleryIndex(index.metric, index.normalize, meta=_comparable(index, _settings(loaded)))
    new.add(features, [str(p.resolve()) for p in paths])
    added = new.merge_into(index_path)  # under the index's lock, into the index as it is now
    typer.echo(f"added {added} images; {index_path} now holds {len(GalleryIndex.load(index_path))}")


def search(
    index_path: Path = typer.Option(..., "--index", help="Index file (.npz)."),
    image: Path | None = typer.Option(None, "--image", help="Query image (or --camera and --track)."),
    camera: str | None = typer.Option(None, "--camera", help="The query track's camera (a track index)."),
    track: int | None = typer.Option(None, "--track", help="The query track's id in its track file."),
    topk: int = typer.Option(10, help="How many matches to print."),
    include_same_camera: bool = typer.Option(
        False, "--include-same-camera", help="Also return tracks of the query track's own camera."
    ),
    rescore: str = typer.Option(
        "mean", help="Track distance: mean (pooled features) or max (closest crops)."
    ),
    backend: str = typer.Option(
        "torch", help="torch (exact matmul), faiss (exact flat index) or faiss-hnsw (tracks; approximate)."
    ),
    device: str = typer.Option("auto", help="Where to embed the query and search: auto, cpu, cuda, ..."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    checkpoint: Path | None = typer.Option(
        None,
        "--checkpoint",
        help="The index's model, e.g. after moving it, or its .onnx export (default: the recorded path).",
    ),
    runtime: str = typer.Option("auto", "--runtime", help=RUNTIME_HELP),
) -> None:
    """Print the --topk gallery entries closest to --image, or (a track index) to the track --camera/--track,
    with distances. A track query leaves out its own camera unless --include-same-camera. The image is
    embedded with the model the index was built with (checked by content hash)."""
    from occreid.retrieval import TrackIndex, load_index

    if (image is None) == (camera is None and track is None) or (image is None and None in (camera, track)):
        raise OccreidError("give the query as --image FILE, or as --camera NAME with --track ID")
    index = load_index(index_path)
    if image is None or isinstance(index, TrackIndex):
        query, options = (image, camera, track), (topk, include_same_camera, rescore, backend)
        _search_tracks(index, index_path, query, options, device, as_json, (checkpoint, runtime))
        return
    if image.is_dir():
        raise OccreidError(f"--image {image} is a folder; give one query image file")
    if not image.is_file():
        raise OccreidError(f"query image not found: {image}")
    loaded = _index_model(index, index_path, " to embed the query with", checkpoint, runtime, device)
    problem = index.precision_problem(loaded.precision)
    if problem:
        typer.echo(f"warning: {problem}; distances mix the two (close, not equal)", err=True)
    _warn_if_resized_otherwise(index, index_path)
    features = _extract(loaded, [image], device, 1)
    index.check_compatible(_comparable(index, _settings(loaded)))
    results = index.search_paths(features, topk=topk, backend=backend, device=device)[0]
    if as_json:
        typer.echo(
            json.dumps({"query": str(image), "results": [{"path": p, "distance": d} for p, d in results]})
        )
        return
    typer.echo(f"query {image}  ({index.metric} distance, {len(index)} gallery images)")
    for rank, (path, distance) in enumerate(results, start=1):
        typer.echo(f"{rank:>4}  {distance:10.4f}  {path}")


def _search_tracks(index, index_path, query, options, device, as_json, model) -> None:
    """`search` on a track index (by image or by track), or by track on an image index (refused there).
    `query` is (image, camera, track), `options` (topk, include_same_camera, rescore, backend), `model`
    (checkpoint, runtime)."""
    from occreid.cli.recordings import print_results
    from occreid.evaluation.index import GalleryIndex
    from occreid.inference import FeatureExtractor
    from occreid.retrieval import search_by_image, search_by_track

    image, camera, track = query
    topk, include_same_camera, rescore, backend = options
    common = {"topk": topk, "rescore": rescore, "backend": backend}
    if image is None:
        answer = search_by_track(index, camera, track, include_same_camera=include_same_camera, **common)
    else:
        if not image.is_file():
            raise OccreidError(f"query image not found: {image}")
        loaded = _index_model(index, index_path, " to embed the query with", model[0], model[1], device)
        GalleryIndex(meta=index.meta).check_compatible(_comparable(index, _settings(loaded)))
        extractor = FeatureExtractor.for_model(loaded, device=device, batch_size=1, progress=False)
        answer = search_by_image(index, image, extractor, **common)
    print_results(answer, as_json, len(index))


index_app.command("build")(index_build)
index_app.command("add")(index_add)


def register(app: typer.Typer) -> None:
    app.add_typer(index_app, name="index")
    app.command("search")(search)
