"""Logging for the server: the access log names no client address and no token.

Tokens travel in the addresses of a few routes only (TOKEN_ROUTES, by name), so the access
log looks for them on those routes alone: any other request's line is written as uvicorn
formats it, for the price of one `str.startswith`. Every other record (errors, the app's
own messages) is searched in full, as those are rare.
"""

from __future__ import annotations

import http
import logging
import re
import time
import traceback
from typing import Any

from starlette.routing import Route

# Magic-link tokens travel in the path of /verify/{token}, /manage/{token},
# /authors/sign-in/{token} and a founding round's /founding/{token}, and single sign-on's
# one-time code and state in the query of its callback; anything else secret travels only
# in request bodies, never logged.
_TOKEN_IN_PATH = re.compile(r"(/(?:verify|manage|founding|authors/sign-in)/)[^\s/?\"]+")
_TOKEN_IN_QUERY = re.compile(r"([?&](?:code|state|token)=)[^&\s\"]+")


def redact(text: str) -> str:
    return _TOKEN_IN_QUERY.sub(r"\1[redacted]", _TOKEN_IN_PATH.sub(r"\1[redacted]", text))


# The routes whose address carries a secret: a magic link's token in the path, single
# sign-on's code and state in the query. tests/web/test_security.py checks every route with
# a `{token}` in its path is here.
TOKEN_ROUTES = (
    "verify",
    "verify_confirm",
    "manage",
    "manage_action",
    "author_link",
    "author_link_confirm",
    "author_oidc_callback",
    "founding",
    "founding_sign",
    "founding_manage",
)


def token_prefixes() -> tuple[str, ...]:
    """What the addresses of TOKEN_ROUTES start with: their path up to the first parameter."""
    from letters.app import make_routes  # the route table; it imports this module

    paths = {
        route.path.split("{", 1)[0]
        for route in make_routes()
        if isinstance(route, Route) and route.name in TOKEN_ROUTES
    }
    return tuple(sorted(paths))


class RedactTokens(logging.Filter):
    """Hides tokens in log lines, and the messages of logged exceptions.

    A traceback's frames (files, lines, code) are kept for debugging; the exception's
    message is dropped, since messages can quote request data or database rows.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if record.exc_info and record.exc_info[0] is not None:
            kind, _, trace = record.exc_info
            frames = "".join(traceback.format_tb(trace))
            record.exc_text = (
                f"Traceback (most recent call last):\n{frames}{kind.__name__} (message withheld)"
            )
            record.exc_info = None
        return True


class RedactTokenRoutes(RedactTokens):
    """The access log's filter: redacts only the lines of requests to TOKEN_ROUTES.

    uvicorn's access records carry (client, method, path with query, version, status).
    """

    def __init__(self, name: str = "") -> None:
        super().__init__(name)
        self.prefixes = token_prefixes()

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if (
            isinstance(args, tuple)
            and len(args) == 5
            and isinstance(args[2], str)
            and not args[2].startswith(self.prefixes)
        ):
            return True
        return super().filter(record)


# "200 OK": the status and its phrase, as uvicorn's own access log writes them.
STATUS_TEXT = {status.value: f"{status.value} {status.phrase}" for status in http.HTTPStatus}


class AccessFormatter(logging.Formatter):
    """The access log's lines: `TIME LEVEL access: "METHOD PATH HTTP/V" STATUS PHRASE`.

    What uvicorn's formatter writes with this format, for less work on every request: no
    copy of the record, the status text looked up, the time formatted once per second.
    """

    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._stamp = ""

    def format(self, record: logging.LogRecord) -> str:
        args = record.args
        if not isinstance(args, tuple) or len(args) != 5:
            return super().format(record)
        _, method, path, version, status = args
        second = int(record.created)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", self.converter(record.created))
        text = STATUS_TEXT.get(status, f"{status} ") if isinstance(status, int) else status
        return (
            f"{self._stamp},{int(record.msecs):03d} {record.levelname} access: "
            f'"{method} {path} HTTP/{version}" {text}'
        )


# Libraries that log SQL parameters (names, hashes) at DEBUG level; never let them.
PARAMETER_LOGGERS = ("aiosqlite", "sqlalchemy.engine", "psycopg")


def silence_parameter_logging() -> None:
    for name in PARAMETER_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def uvicorn_log_config() -> dict[str, Any]:
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "redact": {"()": "letters.web.logs.RedactTokens"},
            "redact_token_routes": {"()": "letters.web.logs.RedactTokenRoutes"},
        },
        "formatters": {
            "default": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
            # No client address: a signer's IP address is not ours to keep.
            "access": {"()": "letters.web.logs.AccessFormatter"},
        },
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "filters": ["redact"],
                "stream": "ext://sys.stderr",
            },
            "access": {
                "class": "logging.StreamHandler",
                "formatter": "access",
                "filters": ["redact_token_routes"],
                "stream": "ext://sys.stderr",
            },
        },
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO"},
            "uvicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
            "letters": {"handlers": ["default"], "level": "INFO", "propagate": False},
        },
    }
