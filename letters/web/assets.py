"""What a browser asks of every site: icons, fingerprinted static files, compressed text.

Static addresses carry a fingerprint of the file (`/static/css/site.css?v=1a2b3c4d`), so
they may be kept a year: a changed file gets a new address. Text answers to GET and HEAD
are compressed; answers that could echo what a request chose beside a CSRF token in the
same compressed body (BREACH) are not: a POST's, and a GET's with a query string (pages
put their address in the language links), static files apart. Streams of events are
never compressed (Starlette leaves `text/event-stream` alone), so each event leaves at once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from letters.resources import STATIC

FOREVER = "public, max-age=31536000, immutable"
# Without its fingerprint (an old page, a hand-typed address): check back each time.
REVALIDATE = "public, no-cache"
ICON_CACHING = "public, max-age=86400"  # favicon.ico and the touch icon keep their address


@cache
def fingerprint(path: str) -> str:
    """The first hex digits of the SHA-256 of a static file (read once per process)."""
    return hashlib.sha256((STATIC / path).read_bytes()).hexdigest()[:10]


def path_for(url_path_for: Callable[..., Any]) -> Callable[..., str]:
    """The templates' `path_for`: the app's, with the fingerprint on static addresses."""

    def path_for_(name: str, /, **params: Any) -> str:
        path = str(url_path_for(name, **params))
        if name == "static":
            return f"{path}?v={fingerprint(params['path'])}"
        return path

    return path_for_


class Static(StaticFiles):
    """Static files, kept a year when asked for with their current fingerprint."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code in (200, 304):
            version = Request(scope).query_params.get("v")
            current = version is not None and _fingerprint_of(path) == version
            response.headers["Cache-Control"] = FOREVER if current else REVALIDATE
        return response


def _fingerprint_of(path: str) -> str | None:
    try:
        return fingerprint(Path(path).as_posix())
    except OSError:
        return None


# What is worth compressing, and how hard (web.fastpath compresses its answers the same way).
GZIP_MINIMUM_SIZE = 500
GZIP_LEVEL = 6


class CompressReads:
    """gzip for answers to GET and HEAD only (see the module's docstring)."""

    def __init__(self, app: ASGIApp, minimum_size: int = GZIP_MINIMUM_SIZE) -> None:
        self.app = app
        self.gzip = GZipMiddleware(app, minimum_size=minimum_size, compresslevel=GZIP_LEVEL)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] in ("GET", "HEAD")
            and (not scope["query_string"] or scope["path"].startswith("/static/"))
        ):
            await self.gzip(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def _icon(name: str, media_type: str) -> Callable[[Request], Any]:
    async def icon(request: Request) -> Response:
        headers = {"Cache-Control": ICON_CACHING}
        return FileResponse(STATIC / "img" / name, media_type=media_type, headers=headers)

    return icon


routes = [
    Route("/favicon.ico", _icon("favicon.ico", "image/x-icon"), name="favicon"),
    Route("/apple-touch-icon.png", _icon("apple-touch-icon.png", "image/png"), name="touch_icon"),
]
