"""Start uvicorn for the app or the bare baseline with the same settings as `letters serve`.

    python -m bench.serve letters.app:create_app --port 8001 --workers 2 [--no-access-log]

This is the `uvicorn.run(...)` call of `letters.cli.cmd_serve` (factory app, proxy headers
off, no Server header, the redacting log config with its access log), so both servers run
with identical settings; `--no-access-log` turns the access log off for both alike.
"""

from __future__ import annotations

import argparse

import uvicorn

from letters.web.logs import uvicorn_log_config


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("target", help="module:factory, e.g. letters.app:create_app")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--no-access-log", action="store_true")
    parser.add_argument(
        "--proxy-headers",
        action="store_true",
        help="trust X-Forwarded-For from 127.0.0.1, as `letters serve --proxy-headers` does",
    )
    args = parser.parse_args()
    uvicorn.run(
        args.target,
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        proxy_headers=args.proxy_headers,
        forwarded_allow_ips="127.0.0.1",
        log_config=uvicorn_log_config(),
        access_log=not args.no_access_log,
        server_header=False,
        # uvicorn's defaults, named so that both servers surely use the same ones.
        loop="uvloop",
        http="httptools",
    )


if __name__ == "__main__":
    main()
