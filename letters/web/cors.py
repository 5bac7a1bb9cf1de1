"""CORS for the public read-only data: any site may GET the API and the badge.

Only GET and HEAD are granted, and never with credentials, so another site's script can
read what is already public but cannot sign on anyone's behalf (the JSON POSTs need a
preflight that is refused).
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from letters.web.routing import RouteIndex

ALLOWED = {"GET", "HEAD"}


class PublicDataCORSMiddleware:
    """`routes`: the public data, named in the route table (the JSON, the badge...)."""

    def __init__(self, app: ASGIApp, routes: RouteIndex) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.routes:
            await self.app(scope, receive, send)
            return
        headers = {key.decode().lower(): value.decode() for key, value in scope["headers"]}
        origin = headers.get("origin")
        method = scope["method"]
        if method == "OPTIONS" and origin and "access-control-request-method" in headers:
            await self._preflight(headers, send)
            return
        if not origin or method not in ALLOWED:
            await self.app(scope, receive, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                response_headers = MutableHeaders(scope=message)
                response_headers["access-control-allow-origin"] = "*"
                response_headers["access-control-expose-headers"] = "ETag, Retry-After"
            await send(message)

        await self.app(scope, receive, send_with_cors)

    async def _preflight(self, headers: dict[str, str], send: Send) -> None:
        requested = headers["access-control-request-method"].upper()
        allowed = requested in ALLOWED
        response_headers = [(b"vary", b"Origin")]
        if allowed:
            response_headers += [
                (b"access-control-allow-origin", b"*"),
                (b"access-control-allow-methods", b"GET, HEAD"),
                (b"access-control-allow-headers", b"If-None-Match"),
                (b"access-control-max-age", b"86400"),
            ]
        await send(
            {
                "type": "http.response.start",
                "status": 204 if allowed else 403,
                "headers": response_headers,
            }
        )
        await send({"type": "http.response.body", "body": b""})
