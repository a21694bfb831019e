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


def _load_model(checkpoint: Path):
    """(model, cfg) of a deployed checkpoint; a separate function so tests can patch it."""
    from occreid.inference.models import load_deployed_model
    from occreid.modeling.checkpoint import load_checkpoint

    if not checkpoint.is_file():
        load_checkpoint(checkpoint)  # "is a folder ..." or "not found"
    return load_deployed_model(checkpoint, device="cpu")


def list_images(folder: Path) -> list[Path]:
    """Image files under `folder`, recursively, sorted."""
    if not folder.is_dir():
        raise OccreidError(f"image folder not found: {folder}")
    images = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not images:
        raise OccreidError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {folder}")
    return images


def _settings(checkpoint: Path, cfg: Any) -> dict[str, Any]:
    """What must match for two feature sets to be comparable; stored in the index metadata. The model is
    identified by the checkpoint's content hash; its path is only where it was when the index was built.
    `feature` is what the deployed model computes: always f_G (whatever test feature the config names)."""
    from occreid.utils.hashing import file_sha256

    return {
        "checkpoint": str(checkpoint.resolve()),
        "checkpoint_sha256": file_sha256(checkpoint) if checkpoint.is_file() else None,
        "image_size": list(cfg.data.image_size),
        "mean": list(cfg.data.mean),
        "std": list(cfg.data.std),
        "flip": bool(cfg.eval.flip),
        "feature": "f_G",
    }


def _recorded_checkpoint(index: Any, index_path: Path, hint: str, given: Path | None = None) -> Path:
    """The checkpoint to embed with: `given` (--checkpoint) or the one the index records, or OccreidError
    "<index> records no checkpoint<hint>". When the index records a content hash, the checkpoint must have
    it."""
    from occreid.utils.hashing import file_sha256

    recorded = index.meta.get("checkpoint")
    if given is None and not recorded:
        raise OccreidError(f"{index_path} records no checkpoint{hint}")
    checkpoint = Path(given) if given is not None else Path(recorded)
    expected = index.meta.get("checkpoint_sha256")
    if expected:
        if not checkpoint.is_file():
            if given is None:
                raise OccreidError(
                    f"{index_path} was built with {checkpoint}, which is not there (moved or "
                    "deleted); pass --checkpoint with that model's file"
                )
            _load_model(checkpoint)  # its "not found" / "is a folder" message
        if file_sha256(checkpoint) != expected:
            raise OccreidError(
                f"{checkpoint} is not the model {index_path} was built with (its content hash differs: "
                f"{'new weights at the recorded path' if given is None else 'other weights'}); pass "
                "--checkpoint with the original file, or build a new index with `occreid index build "
                "--overwrite`"
            )
    return checkpoint


def _comparable(index: Any, settings: dict[str, Any]) -> dict[str, Any]:
    """The settings to compare with the index's: by content hash when it has one (so a moved checkpoint is
    still the same model), else by path as indexes did before hashes."""
    if index.meta.get("checkpoint_sha256"):
        return {k: v for k, v in settings.items() if k != "checkpoint"}
    return {k: v for k, v in settings.items() if k != "checkpoint_sha256"}


def _extract(checkpoint: Path, images: list[Path], device: str, batch_size: int | None):
    from occreid.inference.extractor import FeatureExtractor

    model, cfg = _load_model(checkpoint)
    extractor = FeatureExtractor.for_config(
        model, cfg, device=device, batch_size=batch_size, progress=len(images) > 1
    )
    return extractor([str(p) for p in images]), cfg


def index_build(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="Deployed model checkpoint."),
    images: Path = typer.Option(..., "--images", help="Folder of gallery images (searched recursively)."),
    out: Path = typer.Option(..., "--out", help="Index file to write (.npz)."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:1, ..."),
    batch_size: int | None = typer.Option(
        None, help="Images per batch; default eval.batch_size of the config."
    ),
    overwrite: bool = typer.Option(False, help="Replace an existing index file."),
) -> None:
    """Embed every image under --images and write a searchable index."""
    from occreid.evaluation.index import GalleryIndex, index_lock
    from occreid.utils.files import check_output_file

    if out.suffix != ".npz":
        raise OccreidError(f"--out {out} must end in .npz")
    if out.exists() and not overwrite:
        raise OccreidError(f"{out} exists; use `occreid index add` to extend it or --overwrite to replace it")
    check_output_file(out, "--out", overwrite=True)
    paths = list_images(images)
    from occreid.data.images import check_images

    check_images(paths, "gallery")
    features, cfg = _extract(checkpoint, paths, device, batch_size)
    index = GalleryIndex(
        metric=cfg.eval.metric, normalize=cfg.eval.normalize, meta=_settings(checkpoint, cfg)
    )
    index.add(features, [str(p.resolve()) for p in paths])
    with index_lock(out):  # another build or add into --out at the same time: one wins, nothing mixed
        if out.exists() and not overwrite:
            raise OccreidError(f"{out} was created by another command meanwhile; use `occreid index add`")
        index.save(out)
    typer.echo(f"indexed {len(index)} images ({index.dim}-d, {index.metric}) -> {out}")


def index_add(
    index_path: Path = typer.Option(..., "--index", help="Existing index file (.npz)."),
    images: Path = typer.Option(..., "--images", help="Folder of images to add (searched recursively)."),
    checkpoint: Path | None = typer.Option(
        None, "--checkpoint", help="Default: the one the index was built with."
    ),
    device: str = typer.Option("auto", help="auto, cpu, cuda, ..."),
    batch_size: int | None = typer.Option(
        None, help="Images per batch; default eval.batch_size of the config."
    ),
) -> None:
    """Embed the images under --images with the index's checkpoint and append them (already indexed paths are
    skipped)."""
    from occreid.evaluation.index import GalleryIndex

    index = GalleryIndex.load(index_path)
    checkpoint = _recorded_checkpoint(index, index_path, "; pass --checkpoint", checkpoint)
    known = set(index.paths)
    paths = [p for p in list_images(images) if str(p.resolve()) not in known]
    if not paths:
        typer.echo(f"nothing to add: every image under {images} is already in {index_path}")
        return
    features, cfg = _extract(checkpoint, paths, device, batch_size)
    index.check_compatible(_comparable(index, _settings(checkpoint, cfg)))
    if (cfg.eval.metric, cfg.eval.normalize) != (index.metric, index.normalize):
        raise OccreidError(
            f"the index uses metric={index.metric}, normalize={index.normalize} but the checkpoint's config "
            f"says metric={cfg.eval.metric}, normalize={cfg.eval.normalize}; build a new index"
        )
    new = GalleryIndex(index.metric, index.normalize, meta=_comparable(index, _settings(checkpoint, cfg)))
    new.add(features, [str(p.resolve()) for p in paths])
    added = new.merge_into(index_path)  # under the index's lock, into the index as it is now
    typer.echo(f"added {added} images; {index_path} now holds {len(GalleryIndex.load(index_path))}")


def search(
    index_path: Path = typer.Option(..., "--index", help="Index file (.npz)."),
    image: Path = typer.Option(..., "--image", help="Query image."),
    topk: int = typer.Option(10, help="How many matches to print."),
    backend: str = typer.Option("torch", help="torch (exact matmul) or faiss (exact flat index)."),
    device: str = typer.Option("auto", help="Where to embed the query and search: auto, cpu, cuda, ..."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    checkpoint: Path | None = typer.Option(
        None, "--checkpoint", help="The index's model, e.g. after moving it (default: the recorded path)."
    ),
) -> None:
    """Print the --topk gallery images closest to --image, with distances. The query is embedded with the
    model the index was built with (checked by content hash)."""
    from occreid.evaluation.index import GalleryIndex

    index = GalleryIndex.load(index_path)
    if image.is_dir():
        raise OccreidError(f"--image {image} is a folder; give one query image file")
    if not image.is_file():
        raise OccreidError(f"query image not found: {image}")
    checkpoint = _recorded_checkpoint(index, index_path, " to embed the query with", checkpoint)
    features, cfg = _extract(checkpoint, [image], device, 1)
    index.check_compatible(_comparable(index, _settings(checkpoint, cfg)))
    results = index.search_paths(features, topk=topk, backend=backend, device=device)[0]
    if as_json:
        typer.echo(
            json.dumps({"query": str(image), "results": [{"path": p, "distance": d} for p, d in results]})
        )
        return
    typer.echo(f"query {image}  ({index.metric} distance, {len(index)} gallery images)")
    for rank, (path, distance) in enumerate(results, start=1):
        typer.echo(f"{rank:>4}  {distance:10.4f}  {path}")


index_app.command("build")(index_build)
index_app.command("add")(index_add)


def register(app: typer.Typer) -> None:
    app.add_typer(index_app, name="index")
    app.command("search")(search)
