"""The baseline: a bare Starlette endpoint returning a fixed JSON body.

bench/read.py serves `app` exactly as `uvicorn bench.bare_app:app` would (uvicorn's own
defaults, its access log on unless both servers have it off): the floor a plain Starlette
app pays, against which the letters app (served as `letters serve` does) is measured.
bench/storm.py serves `create_app` through bench/serve.py, with the app's own settings.
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


app = create_app()
