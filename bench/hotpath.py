"""The app's own cost on the read path, without a server: the ASGI app called directly.

    python -m bench.hotpath [--calls 20000] [--html /en/letters/{slug}] [--profile]

Builds the app on a temporary SQLite database with the demo letter, warms its cache (and
its fast path) with one request per target through its lifespan, then calls it directly
`--calls` times per target with a plain GET and prints microseconds per call, next to the
bare endpoint (bench/bare_app.py, routing and JSON included). No socket, no HTTP parser,
no access log: what is left is the app's own work. `--profile` also prints cProfile's top
functions for the letter page. Run it from a copy of another commit (with this file) to
compare versions; `--html /letters/{slug}` for versions before the page per language.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
from typing import Any

from starlette.testclient import TestClient

from bench.bare_app import create_app as create_bare
from letters.app import create_app
from letters.cli import migrate
from letters.db import make_sync_engine
from letters.importer import load_demo
from letters.settings import Settings

SCOPE = {
    "type": "http",
    "asgi": {"version": "3.0"},
    "http_version": "1.1",
    "method": "GET",
    "scheme": "http",
    "root_path": "",
    "query_string": b"",
    "server": ("127.0.0.1", 8000),
    "client": ("127.0.0.1", 5000),
    "headers": [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"wrk"), (b"accept", b"*/*")],
}


async def per_call(app: Any, path: str, calls: int) -> tuple[float, int]:
    """Microseconds per call of `app` for a GET of `path`, and the last status."""
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    started = time.perf_counter()
    for _ in range(calls):
        await app({**SCOPE, "path": path, "raw_path": path.encode()}, receive, send)
    return (time.perf_counter() - started) / calls * 1e6, status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--html", default="/en/letters/{slug}", help="the letter page's path")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="letters-hotpath-")
    settings = Settings(
        database_url=f"sqlite:///{folder}/hotpath.db",
        secret_key="hotpath-" + "0" * 40,
        environment="test",
        cache_seconds=3600,  # warm for the whole run
    )
    migrate(settings)
    engine = make_sync_engine(settings)
    slug = load_demo(engine).letter.slug
    engine.dispose()
    app = create_app(settings)
    targets = [
        ("bare", create_bare(), "/"),
        ("api", app, f"/api/letters/{slug}"),
        ("html", app, args.html.format(slug=slug)),
    ]

    async def run() -> None:
        for name, target, path in targets:
            await per_call(target, path, args.calls // 10)  # warm-up
            micros, status = await per_call(target, path, args.calls)
            print(f"{name:6} {micros:7.1f} us/call  status {status}")
        if args.profile:
            profile = cProfile.Profile()
            profile.enable()
            await per_call(app, targets[2][2], args.calls)
            profile.disable()
            pstats.Stats(profile).sort_stats("tottime").print_stats(15)

    with TestClient(app) as client:  # the app's lifespan: engine, caches
        for _, _, path in targets[1:]:
            client.get(path)
        client.portal.call(run)


if __name__ == "__main__":
    main()
