"""`occreid synth`: render the SynthOcc benchmark; `occreid synth preview`: draw a contact sheet of one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from occreid.errors import OccreidError


class _SynthGroup(TyperGroup):
    """`occreid synth`'s command group: an occluder type where a sub-command goes is the space-separated form
    of --train-occluders, answered with the comma-separated one."""

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        from occreid.data.synthocc.occluders import OCCLUDER_TYPES

        if args and args[0] in OCCLUDER_TYPES and args[0] not in self.commands:
            given = [str(ctx.params.get("train_occluders") or ""), *args]
            kinds = ",".join(k for k in given if k in OCCLUDER_TYPES)
            raise OccreidError(f"--train-occluders takes one comma-separated list: --train-occluders {kinds}")
        return super().resolve_command(ctx, args)


synth_app = typer.Typer(
    cls=_SynthGroup,
    help="Render SynthOcc, the built-in synthetic occluded-person ReID benchmark (see docs/synthocc.md).",
    invoke_without_command=True,
    no_args_is_help=False,
)


@synth_app.callback(invoke_without_command=True)
def synth(
    ctx: typer.Context,
    out: Path = typer.Option(None, "--out", help="Folder to write the dataset to (Market-1501 layout)."),
    preset: str = typer.Option("default", help="small (tests, ~500 images) or default (~4,100 images)."),
    seed: int = typer.Option(0, help="Dataset seed (>= 0): the same seed gives byte-identical images."),
    protocol: str = typer.Option(
        "occluded", help="occluded, partial or holistic (what the query/gallery hold)."
    ),
    workers: int = typer.Option(2, help="Rendering processes; the output does not depend on it."),
    preview: bool = typer.Option(False, "--preview", help="Also save <out>/preview.png, a contact sheet."),
    force: bool = typer.Option(
        False,
        "--overwrite",
        "--force",
        help="Replace a SynthOcc dataset already in --out (never other data).",
    ),
    train_occluders: str | None = typer.Option(
        None,
        "--train-occluders",
        help="Unseen occluders: training images occluded only by these types (e.g. vehicle,pole), queries "
        "and gallery only by the others. Types: vehicle, pole, board, person, clutter.",
    ),
) -> None:
    """Render a SynthOcc dataset with ground-truth keypoints and occlusion labels."""
    if ctx.invoked_subcommand is not None:
        return
    if out is None:
        raise OccreidError(
            "--out is required: the folder to write the dataset to, e.g. `occreid synth --out data/synthocc`"
        )
    from occreid.data.synthocc import generate, make_contact_sheet

    kinds = None if train_occluders is None else [k.strip() for k in train_occluders.split(",") if k.strip()]
    info = generate(
        out, preset=preset, seed=seed, protocol=protocol, workers=workers, force=force, train_occluders=kinds
    )
    for split, c in info["counts"].items():
        typer.echo(f"{split:<8} {c['identities']:>5} ids {c['images']:>6} images {c['occluded']:>5} occluded")
    typer.echo(f"wrote {out} (protocol {protocol}, seed {seed})")
    if info["train_occluders"]:
        typer.echo(
            f"unseen occluders: training {', '.join(info['train_occluders'])}; "
            f"query/gallery {', '.join(info['test_occluders'])}"
        )
    if preview:
        typer.echo(f"preview: {make_contact_sheet(out)}")


@synth_app.command("preview")
def preview_cmd(
    root: Path = typer.Argument(..., help="A folder written by `occreid synth`."),
    out: Path = typer.Option(None, help="PNG to write; default <root>/preview.png."),
    num_ids: int = typer.Option(6, help="Identities (rows) to draw."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing picture at --out."),
) -> None:
    """Save a contact sheet: identities across cameras with occluder boxes and keypoints."""
    from occreid.data.synthocc import make_contact_sheet
    from occreid.utils.files import check_picture_file

    check_picture_file(out if out is not None else root / "preview.png", "--out", overwrite)
    typer.echo(f"preview: {make_contact_sheet(root, out, num_ids=num_ids)}")


def register(app: typer.Typer) -> None:
    app.add_typer(synth_app, name="synth")
