"""What keeps the server safe: a request-body limit (413), one-line JSON errors without tracebacks, query
images decoded only within a pixel limit, and files served only from inside a given folder."""

from __future__ import annotations

import io
import logging
import warnings
from pathlib import Path
from typing import Any

from occreid.errors import OccreidError

log = logging.getLogger("uvicorn.error")  # beside uvicorn's own lines


# Every answer: the page runs only its own script and loads only from this server (data: and blob: for the
# response maps and the dropped query's preview); no other site may frame it; types are never guessed.
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
        b"object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


class TooLargeError(OccreidError):
    """A request body over the upload limit (HTTP 413)."""


class NotFoundError(OccreidError):
    """A file or page the server does not have (HTTP 404)."""


def one_line(text: str, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _json_response(status: int, message: str):
    from starlette.responses import JSONResponse

    return JSONResponse({"error": one_line(message)}, status_code=status)


def host_name(header: bytes) -> str:
    """The host of a Host header, without its port: b"127.0.0.1:8765" -> "127.0.0.1", b"[::1]:80" -> "::1"."""
    text = header.decode("latin-1").strip().lower()
    if text.startswith("["):
        return text[1 : text.find("]")] if "]" in text else text
    return text.rsplit(":", 1)[0] if text.count(":") == 1 else text


class Guard:
    """ASGI middleware in front of the app.

    - A Host header not in `hosts` (when given) gets 400: a web page elsewhere cannot reach a server on
      127.0.0.1 through a DNS name it controls (DNS rebinding).
    - A request whose body is over `limit` bytes gets 413, by its Content-Length before anything is read, or
      while it streams in.
    - Any other exception escaping the app becomes a one-line 500 and one line in the log, never a traceback.
    """

    def __init__(self, app: Any, limit: int, limit_text: str, hosts: tuple[str, ...] | None = None) -> None:
        self.app = app
        self.limit = limit
        self.too_large = f"the upload is over the {limit_text} limit; send a smaller image"
        self.hosts = hosts

    def _refusal(self, headers: dict) -> tuple[int, str] | None:
        host = host_name(headers.get(b"host", b""))
        if self.hosts is not None and host not in self.hosts:
            return 400, f"this server answers only to {', '.join(self.hosts)}, not to Host {host!r}"
        length = headers.get(b"content-length", b"0")
        if not length.isdigit():
            return 400, "bad Content-Length header"
        return (413, self.too_large) if int(length) > self.limit else None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(dict(scope.get("headers") or []))
        if refusal is not None:
            await _json_response(*refusal)(scope, receive, send)
            return
        started = False
        seen = 0

        async def counted_receive() -> dict:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise TooLargeError(self.too_large)
            return message

        async def tracked_send(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except Exception as exc:  # the last line of defence: one line, no traceback
            status = 413 if isinstance(exc, TooLargeError) else 500
            message = str(exc) if status == 413 else "internal error; the server log has one line about it"
            log.error("error: %s %s: %s", scope.get("method"), scope.get("path"), one_line(repr(exc)))
            if not started:
                await _json_response(status, message)(scope, receive, send)


def decode_image(data: bytes, max_pixels: int) -> Any:
    """A query image (PIL, RGB) from uploaded bytes; OccreidError for a non-image, a broken image or one over
    `max_pixels` (checked from the header, before any pixel is decoded: a decompression bomb is never
    expanded)."""
    from PIL import Image

    if not data:
        raise OccreidError("the uploaded file is empty; send a JPEG or PNG image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
                if width * height > max_pixels:
                    raise OccreidError(
                        f"the uploaded image is {width}x{height} pixels, over the {max_pixels:,}-pixel limit "
                        "(a possible decompression bomb); send a person crop"
                    )
                return img.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Warning) as exc:
        kind = "not an image" if isinstance(exc, Image.UnidentifiedImageError) else one_line(str(exc), 120)
        raise OccreidError(
            f"the uploaded file is not a readable image ({kind}); send a JPEG or PNG"
        ) from None


def file_inside(root: Path, relative: str) -> Path:
    """The file `root/relative`, refusing any path that leaves `root` (`..`, absolute paths, backslashes,
    links out of it) with OccreidError, and a missing file with NotFoundError."""
    parts = relative.replace("\\", "/").split("/")
    if (
        "\\" in relative
        or relative.startswith("/")
        or any(p in ("..", ".") for p in parts)
        or "\0" in relative
    ):
        raise OccreidError(f"refused path {relative!r}: only files inside the folder are served")
    root = root.resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root):
        raise OccreidError(f"refused path {relative!r}: it leads outside the folder")
    if not path.is_file():
        raise NotFoundError(f"no file {relative!r} here")
    return path
