"""`occreid serve`: a local web page to search and browse a track gallery index, with a JSON API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from occreid.apps.serve import settings
from occreid.errors import OccreidError


def query_model(
    index: Any, index_path: Path, checkpoint: Path | None, device: str = "cpu"
) -> tuple[Any, Any]:
    """(extractor, explainer) of the model that embeds query images: --checkpoint, else the one the index
    records (same content hash). Without either, (None, None): searching by image is off and the page says
    so."""
    from occreid.apps.serve.explain import Explainer
    from occreid.cli.evaluation import _index_model
    from occreid.inference.extractor import FeatureExtractor
    from occreid.utils.device import resolve_device

    meta = getattr(index, "meta", {}) or {}
    if checkpoint is None and not meta.get("checkpoint"):
        typer.secho(f"warning: {index_path} records no checkpoint; searching by image is off", err=True)
        return None, None
    device = str(resolve_device(device, option="--device"))
    try:  # the torch runtime: the explainer reads the model's feature maps
        loaded = _index_model(index, index_path, "", checkpoint, "torch", device)
    except OccreidError as exc:
        if checkpoint is not None:
            raise
        typer.secho(f"warning: searching by image is off: {exc}", err=True)
        return None, None
    extractor = FeatureExtractor.for_model(loaded, device=device, progress=False)
    return extractor, Explainer(loaded.model, loaded.cfg)


def _check_port(host: str, port: int) -> None:
    import socket

    if not 1 <= port <= 65535:
        raise OccreidError(f"--port {port} is not a port number (1 to 65535)")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise OccreidError(
                f"cannot listen on {host}:{port} ({exc.strerror}); pick another --port or --host"
            ) from None


def serve(
    index_path: Path = typer.Option(
        ..., "--index", help="Track gallery index (occreid index build --tracks)."
    ),
    checkpoint: Path | None = typer.Option(
        None, "--checkpoint", help="Model for image queries (default: the one the index records)."
    ),
    runs: list[Path] = typer.Option(
        [], "--run", metavar="DIR", help="A training run folder whose report to show; repeatable."
    ),
    host: str = typer.Option(settings.HOST, help="Address to listen on; only this machine by default."),
    port: int = typer.Option(settings.PORT, help="Port to listen on."),
    upload_limit_mb: float = typer.Option(
        settings.UPLOAD_LIMIT_MB, help="Largest query image upload, in MB."
    ),
    backend: str = typer.Option(
        "torch", help="Search backend: torch or faiss (exact), faiss-hnsw (approximate, for large galleries)."
    ),
    device: str = typer.Option("auto", help="Where image queries are embedded: auto, cpu, cuda, cuda:1, ..."),
) -> None:
    """Serve a page to search the index by track or by image, browse its tracks and read run reports."""
    from occreid.apps.serve.app import ServeState, create_app
    from occreid.apps.serve.runs import check_run
    from occreid.retrieval import load_index
    from occreid.retrieval.search import BACKENDS

    if upload_limit_mb <= 0:
        raise OccreidError(f"--upload-limit-mb must be above 0, got {upload_limit_mb}")
    if backend not in BACKENDS:
        raise OccreidError(f"--backend {backend!r} is not one of {', '.join(BACKENDS)}")
    run_folders = [check_run(run) for run in runs]
    _check_port(host, port)
    index = load_index(index_path)
    if not hasattr(index, "list_tracks"):
        raise OccreidError(
            f"{index_path} is an image index; occreid serve browses track indexes (occreid index build "
            "--tracks ...); search an image index with `occreid search --image`"
        )
    extractor, explainer = query_model(index, index_path, checkpoint, device)
    local = host in settings.LOOPBACK_HOSTS
    hosts = settings.LOOPBACK_HOSTS if local else None  # on this machine: only its own names (no rebinding)
    state = ServeState(
        index, extractor, run_folders, upload_limit_mb, explainer=explainer, hosts=hosts, backend=backend
    )
    if not local:
        typer.secho(
            f"warning: listening on {host}, not only this machine: anyone who can reach it can search the "
            "index and see its crops; use --host 127.0.0.1 to keep it local",
            err=True,
        )
    import uvicorn

    typer.echo(f"occreid serve: open http://{'[' + host + ']' if ':' in host else host}:{port}/")
    uvicorn.run(create_app(state), host=host, port=port, log_level="info", server_header=False)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
