"""Health: `/healthz` says the process answers (liveness); `/readyz` says it can also reach
its database (readiness), and answers 503 while it cannot.

Liveness never touches the database, so a process manager does not restart healthy
processes while the database is away (they recover by themselves when it is back); a load
balancer or a container health check asks `/readyz` before sending traffic.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import text
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

# Longer than a round trip to a database that is up, shorter than a health check's timeout.
READY_TIMEOUT = 3.0
NO_STORE = {"Cache-Control": "no-store"}


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"}, headers=NO_STORE)


async def _ping(request: Request) -> None:
    async with request.app.state.engine.connect() as connection:
        await connection.execute(text("SELECT 1"))


async def ready(request: Request) -> Response:
    try:
        await asyncio.wait_for(_ping(request), timeout=READY_TIMEOUT)
    except (OperationalError, InterfaceError, PoolTimeout, TimeoutError, OSError):
        return JSONResponse(
            {"status": "unavailable", "database": "unreachable"},
            status_code=503,
            headers={**NO_STORE, "Retry-After": "5"},
        )
    return JSONResponse({"status": "ok", "database": "ok"}, headers=NO_STORE)


routes = [
    Route("/healthz", health, name="health"),
    Route("/readyz", ready, name="ready"),
]
