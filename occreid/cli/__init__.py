"""The `occreid` command line. Each subcommand group lives in its own module with a `register(app)` function;
modules import heavy libraries (torch, PIL) inside the command functions so `occreid --help` stays fast."""

from __future__ import annotations

import errno
import functools
import sys
from collections.abc import Callable
from typing import Any

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
    typer.echo(
        f"occreid {__version__}, python {platform.python_version()}, torch {torch.__version__}, device "
        f"{device}"
    )


class _Interrupted(Exception):
    """Ctrl-C inside a command. (typer turns a KeyboardInterrupt into a silent exit 130 before main sees
    it.)"""


INTERRUPTED = (
    "interrupted (Ctrl-C); what was written so far is kept: `occreid train ... --resume auto` continues a "
    "run from its last epoch and `occreid pose extract` resumes where it stopped"
)


def _catch_interrupt(callback: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(callback)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return callback(*args, **kwargs)
        except KeyboardInterrupt:
            raise _Interrupted() from None

    return wrapper


def _wrap_commands(group: typer.Typer) -> None:
    for command in group.registered_commands:
        command.callback = _catch_interrupt(command.callback)
    if group.registered_callback is not None and group.registered_callback.callback is not None:
        group.registered_callback.callback = _catch_interrupt(group.registered_callback.callback)
    for sub in group.registered_groups:
        _wrap_commands(sub.typer_instance)


def _register_all() -> None:
    from occreid.cli import data, evaluation, export, pose, report, synth, train

    for module in (synth, data, pose, train, report, evaluation, export):
        module.register(app)
    _wrap_commands(app)


_register_all()


def main() -> None:
    try:
        app()
    except OccreidError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(2)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        typer.secho(f"error: {where}{exc.strerror}; free some space and run the command again", err=True)
        sys.exit(2)
    except (KeyboardInterrupt, _Interrupted):
        typer.secho(INTERRUPTED, err=True)
        sys.exit(130)
