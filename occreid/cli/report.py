"""`occreid report RUN`: a report of any training run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def report(
    run: Annotated[Path, typer.Argument(help="run folder written by occreid train (holds best.pt)")],
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="replace RUN/report/ if it holds an earlier report")
    ] = False,
) -> None:
    """Write RUN/report/report.md with its pictures: training curves, best.pt's evaluation on the run's own
    query and gallery next to the chance level, ranked lists, and response or attention maps."""
    from occreid.reports import write_run_report

    path = write_run_report(run, overwrite=overwrite)
    typer.echo(f"report: {path}")


def register(app: typer.Typer) -> None:
    app.command("report")(report)
