"""The access log redacts tokens on the routes that carry them, and only there."""

from __future__ import annotations

import logging

from starlette.routing import Route

from letters.app import make_routes
from letters.web.logs import TOKEN_ROUTES, RedactTokenRoutes, uvicorn_log_config


def access_record(path: str) -> logging.LogRecord:
    """A record as uvicorn's access logger makes it."""
    return logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        "",
        0,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", path, "1.1", 200),
        None,
    )


def test_every_route_with_a_token_in_its_address_is_a_token_route():
    with_token = {
        route.name for route in make_routes() if isinstance(route, Route) and "{token" in route.path
    }
    assert with_token <= set(TOKEN_ROUTES)
    assert "author_oidc_callback" in TOKEN_ROUTES  # its code and state are in the query


def test_access_lines_of_token_routes_are_redacted():
    redact = RedactTokenRoutes()
    for path, secret in [
        ("/verify/eyJwIjox.sig", "eyJwIjox"),
        ("/manage/eyJtIjo5.sig", "eyJtIjo5"),
        ("/authors/sign-in/eyJhIjo3.sig", "eyJhIjo3"),
        ("/authors/oidc/callback?code=one-time-code&state=st4te", "one-time-code"),
        ("/authors/oidc/callback?state=st4te&code=c0de", "st4te"),
    ]:
        record = access_record(path)
        redact.filter(record)
        assert secret not in record.getMessage()
        assert "[redacted]" in record.getMessage()


def test_other_access_lines_are_left_as_they_are():
    redact = RedactTokenRoutes()
    for path in ["/letters/test-letter", "/api/letters/test-letter", "/en/letters/x?state=1"]:
        record = access_record(path)
        before = record.args
        redact.filter(record)
        assert record.args is before


def test_the_access_log_uses_the_route_filter_and_other_logs_the_full_one():
    config = uvicorn_log_config()
    assert config["handlers"]["access"]["filters"] == ["redact_token_routes"]
    assert config["handlers"]["default"]["filters"] == ["redact"]


def test_access_lines_read_as_uvicorns_formatter_writes_them():
    from uvicorn.logging import AccessFormatter as UvicornFormatter

    from letters.web.logs import AccessFormatter

    theirs = UvicornFormatter(
        fmt='%(asctime)s %(levelname)s access: "%(request_line)s" %(status_code)s',
        use_colors=False,
    )
    ours = AccessFormatter()
    for status in (200, 302, 304, 404, 503, 599):
        for path in ["/en/letters/test-letter", "/api/letters?x=1", "/verify/[redacted]"]:
            record = access_record(path)
            record.args = (*record.args[:4], status)
            assert ours.format(record) == theirs.format(record)
