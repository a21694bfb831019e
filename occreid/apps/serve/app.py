"""The server's routes: the page, the JSON API over a track gallery index, crops and thumbnails from the
index, and the run report pages. Errors are `{"error": "one line"}` with 400, 404 or 413."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response

from occreid.apps.serve import settings
from occreid.apps.serve.runs import PICTURES, report_file, report_page
from occreid.apps.serve.safety import (
    Guard,
    NotFoundError,
    TooLargeError,
    decode_image,
    file_inside,
    one_line,
)
from occreid.errors import OccreidError
from occreid.retrieval import UnknownTrackError, search_by_image, search_by_track

STATIC_FILES = {"page.js": "text/javascript", "page.css": "text/css"}


@dataclass
class ServeState:
    """What one server serves: the index (loaded once), the model that embeds query images (None: searching
    by image is off), the run folders, the limits, and what explains a query (None: nothing)."""

    index: Any
    extractor: Any = None
    runs: list[Path] = field(default_factory=list)
    upload_limit_mb: float = settings.UPLOAD_LIMIT_MB
    max_pixels: int = settings.MAX_IMAGE_PIXELS
    explainer: Any = None  # occreid.apps.serve.explain.Explainer: response maps or occlusion patterns
    hosts: tuple[str, ...] | None = None  # the Host names it answers to; None: any
    backend: str = "torch"  # occreid.retrieval's search backend: torch, faiss or faiss-hnsw

    @property
    def upload_limit(self) -> int:
        return int(self.upload_limit_mb * 1024 * 1024)


def status_of(exc: OccreidError) -> int:
    if isinstance(exc, TooLargeError):
        return 413
    return 404 if isinstance(exc, (UnknownTrackError, NotFoundError)) else 400


def create_app(state: ServeState) -> Any:
    """The ASGI app: FastAPI with its docs pages off (they load scripts from a CDN)."""
    app = FastAPI(title="occreid", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.serve = state

    @app.exception_handler(OccreidError)
    async def _occreid(request: Any, exc: OccreidError) -> Any:
        return JSONResponse({"error": one_line(str(exc))}, status_code=status_of(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Any, exc: RequestValidationError) -> Any:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "request"
        return JSONResponse({"error": one_line(f"bad {where}: {first.get('msg', 'invalid')}")}, 400)

    @app.exception_handler(HTTPException)
    async def _http(request: Any, exc: HTTPException) -> Any:
        text = "no such page or file" if exc.status_code == 404 else str(exc.detail)
        return JSONResponse({"error": one_line(text)}, status_code=exc.status_code)

    _page_routes(app, state)
    _api_routes(app, state)
    _image_routes(app, state)
    _run_routes(app, state)
    limit_mb = f"{state.upload_limit_mb:g} MB"
    limit = state.upload_limit + settings.MULTIPART_OVERHEAD
    app.add_middleware(Guard, limit=limit, limit_text=limit_mb, hosts=state.hosts)
    return app


def _static(name: str) -> bytes:
    return resources.files("occreid.apps.serve").joinpath("static", name).read_bytes()


def _page_routes(app: Any, state: ServeState) -> None:
    @app.get("/")
    async def index_page() -> Any:
        return HTMLResponse(_static("index.html"))

    @app.get("/static/{name}")
    async def static_file(name: str) -> Any:
        if name not in STATIC_FILES:  # a fixed list: nothing else is ever read
            raise NotFoundError(f"no static file {name!r}")
        return Response(_static(name), media_type=STATIC_FILES[name])


def _api_routes(app: Any, state: ServeState) -> None:
    @app.get("/api/info")
    async def info() -> dict:
        total, _ = state.index.list_tracks(0, 0)
        runs = [{"name": run.name, "url": f"/runs/{i}/report/"} for i, run in enumerate(state.runs)]
        return {"tracks": total, "image_search": state.extractor is not None, "runs": runs}

    @app.get("/api/tracks")
    async def tracks(
        offset: int = Query(0, ge=0), limit: int = Query(settings.PAGE_SIZE, ge=1, le=settings.MAX_PAGE_SIZE)
    ) -> dict:
        total, rows = state.index.list_tracks(offset, limit)
        return {"total": total, "offset": offset, "tracks": rows}

    @app.get("/api/search")
    def search_track(
        camera: str = Query(..., min_length=1),
        track: int = Query(...),
        topk: int = Query(settings.TOPK, ge=1, le=settings.MAX_TOPK),
        include_same_camera: bool = False,
        rescore: str = "mean",
    ) -> dict:
        return search_by_track(
            state.index,
            camera,
            track,
            topk=topk,
            include_same_camera=include_same_camera,
            rescore=rescore,
            backend=state.backend,
        )

    @app.post("/api/search")
    async def search_image(
        request: Request,
        topk: int = Query(settings.TOPK, ge=1, le=settings.MAX_TOPK),
        rescore: str = "mean",
    ) -> dict:
        if state.extractor is None:
            raise OccreidError(
                "this server has no model to embed a query image; start it with --checkpoint (or from an "
                "index that records its checkpoint)"
            )
        image, name = await _uploaded_image(request, state)
        return await run_in_threadpool(
            search_by_image,
            state.index,
            image,
            state.extractor,
            topk=topk,
            rescore=rescore,
            backend=state.backend,
            query=name,
        )

    @app.get("/api/explain")
    def explain_track(camera: str = Query(..., min_length=1), track: int = Query(...)) -> dict:
        image = decode_image(state.index.thumbnail(camera, track), state.max_pixels)
        return state.explainer.explain(image) if state.explainer is not None else {"kind": None}

    @app.post("/api/explain")
    async def explain_image(request: Request) -> dict:
        image, _ = await _uploaded_image(request, state)
        if state.explainer is None:
            return {"kind": None}
        return await run_in_threadpool(state.explainer.explain, image)


async def _uploaded_image(request: Any, state: ServeState) -> tuple[Any, str]:
    """The multipart field `image`, decoded within the limits, and its file name."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise OccreidError("POST takes a multipart/form-data body with the query image in field 'image'")
    try:
        form = await request.form(max_files=1, max_fields=8)
    except TooLargeError:
        raise
    except Exception as exc:  # starlette's MultiPartException, HTTPException on bad framing
        raise OccreidError(f"unreadable multipart body ({one_line(str(exc), 100)})") from None
    upload = form.get("image")
    if not isinstance(upload, UploadFile):
        raise OccreidError("no file in the multipart field 'image'; send the query image as field 'image'")
    data = await upload.read(state.upload_limit + 1)
    if len(data) > state.upload_limit:
        raise TooLargeError(
            f"the upload is over the {state.upload_limit_mb:g} MB limit; send a smaller image"
        )
    return decode_image(data, state.max_pixels), one_line(upload.filename or "image", 200)


def _image_routes(app: Any, state: ServeState) -> None:
    @app.get("/api/thumbnail")
    def thumbnail(camera: str = Query(..., min_length=1), track: int = Query(...)) -> Any:
        return Response(state.index.thumbnail(camera, track), media_type="image/jpeg")

    @app.get("/api/crops")
    def crops(camera: str = Query(..., min_length=1), track: int = Query(...)) -> dict:
        count = len(state.index.crops(camera, track))
        base = f"/api/crop?camera={_quote(camera)}&track={track}"
        return {"camera": camera, "track": track, "crops": [f"{base}&i={i}" for i in range(count)]}

    @app.get("/api/crop")
    def crop(
        camera: str = Query(..., min_length=1), track: int = Query(...), i: int = Query(..., ge=0)
    ) -> Any:
        images = state.index.crops(camera, track)
        if i >= len(images):
            raise NotFoundError(f"track {track} of camera {camera} has {len(images)} crops; no crop {i}")
        return Response(images[i], media_type="image/jpeg")


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


def _run_routes(app: Any, state: ServeState) -> None:
    def run_folder(number: int) -> Path:
        if not 0 <= number < len(state.runs):
            raise NotFoundError(f"no run {number}; this server shows {len(state.runs)} run(s)")
        return state.runs[number]

    @app.get("/runs/{number}")
    async def run_redirect(number: int) -> Any:
        run_folder(number)
        return RedirectResponse(f"/runs/{number}/report/")

    @app.get("/runs/{number}/report/")
    def run_page(number: int) -> Any:
        folder = run_folder(number)
        return HTMLResponse(report_page(folder, folder.name))

    @app.get("/runs/{number}/report/{name:path}")
    def run_file(number: int, name: str) -> Any:
        """A picture beside the run's report.md; nothing else, nothing outside that folder."""
        report = report_file(run_folder(number))
        kind = PICTURES.get(Path(name).suffix.lower())
        if report is None or kind is None:
            raise NotFoundError(f"no picture {name!r} beside this run's report")
        return FileResponse(file_inside(report.parent, name), media_type=kind)
