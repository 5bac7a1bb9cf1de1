"""The baseline: a bare Starlette endpoint returning a fixed JSON body.

Served by bench/serve.py with exactly the uvicorn settings used for the app, so the ratio
app/bare measures what the app adds on top of the server, not the server itself.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

# About the size of a small API answer; fixed, so nothing is computed per request.
BODY = {"slug": "bare", "title": "A fixed body", "verified_count": 12345, "status": "published"}


async def fixed(request: Request) -> Response:
    return JSONResponse(BODY)


def create_app() -> Starlette:
    return Starlette(routes=[Route("/", fixed), Route("/healthz", fixed)])
