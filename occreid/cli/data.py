"""`occreid data ...`: list the datasets, summarise one, and generate Partial-Duke."""

from __future__ import annotations

from pathlib import Path

import typer

data_app = typer.Typer(
    help="Datasets: list them, summarise one, generate Partial-Duke, preview the occlusion augmentation.",
    no_args_is_help=True,
)


@data_app.command("list")
def list_datasets() -> None:
    """Print the dataset names `--dataset`/`data.dataset` accept, with one-line descriptions."""
    from occreid.data.datasets import DATASETS

    width = max(len(n) for n in DATASETS)
    for name, dataset in DATASETS.items():
        typer.echo(f"{name:<{width}}  {dataset.description}")


@data_app.command("summary")
def summary(
    name: str = typer.Argument(..., help="Dataset name (see `occreid data list`)."),
    root: Path | None = typer.Option(
        None,
        "--root",
        help="Dataset folder (or its parent), or a CSV for `folder`; with --csv, the folder its relative "
        "paths are resolved against (default: the CSV's folder).",
    ),
    csv: Path | None = typer.Option(
        None, "--csv", help="`folder` only: a CSV of path,pid,camid[,split[,occluded]]."
    ),
    camids: str | None = typer.Option(
        None,
        "--camids",
        help="`p_dukemtmc`: split (default, as published) or names; `folder`: split for data without camera "
        "labels (query camera 0, gallery camera 1), as data.camids.",
    ),
    split: str | None = typer.Option(
        None, "--split", help="`folder`: auto:0.2 holds out a fifth of the identities, as data.split."
    ),
    check_stats: bool = typer.Option(
        True, "--check-stats/--no-check-stats", help="Compare with published counts."
    ),
) -> None:
    """Print ids / images / cameras per split (and how many images are occluded, where the dataset says)."""
    import warnings
    from collections import Counter

    from occreid.data.datasets import load_dataset
    from occreid.errors import OccreidError

    if root is None and not (name == "folder" and csv is not None):
        raise OccreidError(f"--root is required: the {name} dataset folder (or the folder that contains it)")
    kwargs = {}
    if csv is not None:
        kwargs["csv"] = csv
    if camids is not None:
        kwargs["camids"] = camids
    if split is not None:
        from occreid.config import auto_split_spec

        try:
            kwargs["split"] = auto_split_spec(split)
        except ValueError as exc:
            raise OccreidError(f"--split {split!r}: {exc}") from None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = load_dataset(name, root, check_stats=check_stats, **kwargs)
    typer.echo(dataset.summary())
    for split in ("train", "query", "gallery"):
        records = getattr(dataset, split)
        known = [r for r in records if r.occluded is not None]
        if known:
            occluded = sum(r.occluded for r in known)
            unknown = f", {len(records) - len(known)} unknown" if len(known) < len(records) else ""
            typer.echo(f"  {split:<8}  occluded: {occluded} of {len(records)} images{unknown}")
    for split in ("train", "query", "gallery"):
        types = Counter(r.occluder_type for r in getattr(dataset, split) if r.occluder_type is not None)
        if types:
            ordered = sorted(types.items(), key=lambda kv: (kv[0] == "none", kv[0]))
            listed = ", ".join(f"{t} {n}" for t, n in ordered)
            typer.echo(f"  {split:<8}  occluder types: {listed}")
    if name == "synthocc":
        import json

        info = json.loads((dataset.root / "synthocc.json").read_text())
        line = (
            f"  SynthOcc {info.get('preset')} preset, seed {info.get('seed')}, "
            f"protocol {info.get('protocol')}"
        )
        if info.get("train_occluders"):
            line += (
                f"; unseen occluders: training {'/'.join(info['train_occluders'])}, "
                f"query and gallery {'/'.join(info['test_occluders'])}"
            )
        typer.echo(line)
    for warning in caught:
        typer.secho(f"warning: {warning.message}", fg=typer.colors.YELLOW, err=True)


@data_app.command("make-partial-duke")
def make_partial_duke_command(
    duke: Path = typer.Option(..., "--duke", help="DukeMTMC-reID folder (or its parent)."),
    out: Path = typer.Option(..., "--out", help="New folder for Partial-Duke (must not exist or be empty)."),
    seed: int = typer.Option(0, "--seed", help="Which images get cropped; same seed -> identical output."),
) -> None:
    """Generate Partial-Duke (PGFL-KD paper, section 4.1) from DukeMTMC-reID: half of each split cropped,
    half of those to the upper half and half to the upper third; a manifest lists each file's crop."""
    from collections import Counter

    from occreid.data.datasets.duke import MANIFEST_NAME, read_manifest
    from occreid.data.partial_duke import make_partial_duke

    out_root = make_partial_duke(duke, out, seed=seed)
    counts = Counter(read_manifest(out_root / MANIFEST_NAME).values())
    typer.echo(
        f"Partial-Duke (seed {seed}) written to {out_root}: {counts['none']} whole, {counts['upper_half']} "
        f"upper half, {counts['upper_third']} upper third; manifest {MANIFEST_NAME}"
    )


@data_app.command("augment-preview")
def augment_preview(
    out: Path = typer.Option(..., "--out", help="PNG to write (refused if it exists, unless --overwrite)."),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML config (its data and occlusion)."),
    set_: list[str] | None = typer.Option(None, "--set", "-s", help="override, e.g. occlusion.types=[top]"),
    num: int = typer.Option(16, "--num", help="Training images to draw."),
    seed: int = typer.Option(0, "--seed", help="Seed of the draws."),
    held_out: bool = typer.Option(False, "--held-out", help="Draw only the held-out types and sources."),
    patch: str = typer.Option("16/16", "--patch", help="ViT patch size/stride of the red grid, e.g. 16/12."),
    overwrite: bool = typer.Option(
        False, "--overwrite", "--force", help="Replace --out if it exists (--force: the older spelling)."
    ),
) -> None:
    """Save a grid of the typed occlusion augmentation: x, occluded view, mask (patches with m = 1 in red),
    type."""
    from occreid.config import load_config
    from occreid.data.occlusion.preview import make_augment_preview
    from occreid.data.splits import load_train_set
    from occreid.errors import OccreidError
    from occreid.utils.files import check_picture_file

    check_picture_file(out, "--out", overwrite)
    try:
        patch_size, stride = (int(v) for v in patch.split("/"))
    except ValueError:
        raise OccreidError(f"--patch must look like SIZE/STRIDE, e.g. 16/12; got {patch!r}") from None
    if num < 1:
        raise OccreidError(f"--num must be >= 1, got {num}")
    cfg = load_config(config, list(set_ or []))
    height, width = cfg.data.image_size
    if not (0 < stride <= patch_size <= min(height, width)):
        raise OccreidError(
            f"--patch {patch}: need 0 < STRIDE <= SIZE <= the image's shorter side ({min(height, width)} for "
            f"data.image_size={list(cfg.data.image_size)}), e.g. 16/16 or 16/12"
        )
    dataset = load_train_set(cfg)
    if not dataset.train:
        raise OccreidError(f"dataset {cfg.data.dataset} at {cfg.data.root} has no training images to draw")
    path = make_augment_preview(
        cfg, dataset.train, out, num=num, seed=seed, held_out=held_out, patch_size=patch_size, stride=stride
    )
    typer.echo(f"preview: {path}")


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
