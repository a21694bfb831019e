"""The `occreid` command line. Each subcommand group lives in its own module with a `register(app)` function;
modules import heavy libraries (torch, PIL) inside the command functions so `occreid --help` stays fast."""

from __future__ import annotations

import sys

import typer

from occreid.errors import OccreidError

app = typer.Typer(
    name="occreid",
    help="Occluded person re-identification: data, pose, training, evaluation and search.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Occluded person re-identification: data, pose, training, evaluation and search."""


@app.command()
def info() -> None:
    """Print versions and the compute device occreid would use."""
    import platform

    import torch

    from occreid import __version__

    device = "cuda" if torch.cuda.is_available() else "cpu"
    typer.echo(f"occreid {__version__}, python {platform.python_version()}, torch {torch.__version__}, device {device}")


def _register_all() -> None:
    from occreid.cli import data, evaluation, export, pose, synth, train

    for module in (synth, data, pose, train, evaluation, export):
        module.register(app)


_register_all()


def main() -> None:
    try:
        app()
    except OccreidError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.secho("interrupted", err=True)
        sys.exit(130)
