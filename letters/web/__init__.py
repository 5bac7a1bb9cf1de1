"""Everything that knows HTTP: one module per area exporting its `routes`, and the layers
every request passes through (language, fast path, security headers, CORS, body limit)."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

# The JSON interface lives under this prefix: its errors are JSON, in English, whatever
# address under it was asked for (also one that matches no route).
API_PREFIX = "/api/"


def is_api(path: str) -> bool:
    return path.startswith(API_PREFIX)


class HTTPMiddleware:
    """An ASGI layer for HTTP requests: other scopes (lifespan) pass by it untouched;
    a subclass says what it does with a request in `handle`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.handle(scope, receive, send)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError
