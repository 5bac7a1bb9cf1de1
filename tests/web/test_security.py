"""Security headers, body limits and what reaches the logs."""

from __future__ import annotations

import logging

import pytest

from letters.web.logs import RedactTokens, redact
from tests.helpers import confirm_api, counts, sign_api


def test_security_headers_on_every_page(client, letter):
    for path in ["/", "/letters/test-letter", "/api/letters", "/nope"]:
        headers = client.get(path).headers
        csp = headers["content-security-policy"]
        assert "script-src 'self'" in csp
        assert "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"


def test_csrf_cookie_is_httponly_and_samesite(client, letter):
    # A page for one reader whose form carries a token (the letter page carries none).
    cookie = client.get("/letters/test-letter/manage").headers["set-cookie"]
    assert "csrftoken=" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    # Set once, not on every response.
    assert "set-cookie" not in client.get("/letters/test-letter/manage").headers


def test_bodies_over_the_limit_are_refused_before_being_read(client, letter, mailbox, db):
    big = b'{"email": "a@microsoft.com", "name": "' + b"x" * 70_000 + b'"}'
    response = client.post(
        "/api/letters/test-letter/signatures",
        content=big,
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"

    def chunks():
        yield b'{"email": "a@microsoft.com", "name": "'
        for _ in range(100):
            yield b"x" * 1000
        yield b'"}'

    response = client.post(
        "/api/letters/test-letter/signatures",
        content=chunks(),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413
    response = client.post(
        "/letters/test-letter/sign",
        content=b"email=" + b"x" * 70_000,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 413
    assert mailbox.messages == []
    assert counts(db)["verified"] == 0


def test_redaction_of_tokens_in_log_lines():
    assert (
        redact('"GET /verify/abc.def-ghi HTTP/1.1" 200') == '"GET /verify/[redacted] HTTP/1.1" 200'
    )
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        "",
        0,
        '%s "%s %s"',
        ("-", "GET", "/verify/eyJwIjox.abc"),
        None,
    )
    RedactTokens().filter(record)
    assert "eyJwIjox" not in record.getMessage()


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        ("GET /manage/eyJtIjo5.sig HTTP/1.1", "eyJtIjo5"),
        ("GET /authors/sign-in/eyJhIjo3.sig HTTP/1.1", "eyJhIjo3"),
        ("GET /authors/oidc/callback?code=one-time-code&state=st4te HTTP/1.1", "one-time-code"),
        ("GET /authors/oidc/callback?state=st4te&code=c0de HTTP/1.1", "st4te"),
    ],
)
def test_every_kind_of_token_is_redacted(line, secret):
    assert secret not in redact(line)
    assert "[redacted]" in redact(line)


def test_nothing_private_is_logged_during_a_signing(client, letter, mailbox, caplog):
    caplog.set_level(logging.DEBUG)
    sign_api(client, "logcheck.person@microsoft.com", name="Logan Hiddenname", title="Team X")
    token = mailbox.last_token()
    client.get(f"/verify/{token}")
    confirm_api(client, token)
    sign_api(client, "bad@gmail.com", name="Other Name")
    # Everything the app and its libraries logged, less the test's own HTTP client (httpx2)
    # and SMTP server (aiosmtpd's "mail.log"), which stand for the browser and the mailbox.
    test_side = ("httpx", "mail.log")
    text = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith(test_side))
    assert caplog.records
    for secret in ["logcheck", "Logan", "Hiddenname", token, "Other Name", "gmail"]:
        assert secret not in text


def test_chunked_form_bodies_over_the_limit_get_413(client, letter, mailbox):
    def chunks():
        yield b"email=a%40microsoft.com&name="
        for _ in range(100):
            yield b"x" * 1000

    for path in ["/letters/test-letter/sign", "/verify/some-token"]:
        response = client.post(
            path, content=chunks(), headers={"content-type": "application/x-www-form-urlencoded"}
        )
        assert response.status_code == 413
    assert mailbox.messages == []


def test_logged_exceptions_keep_their_frames_but_not_their_message():
    address = "secret.person@" + "microsoft.com"
    try:
        raise ValueError(address)
    except ValueError:
        import sys

        record = logging.LogRecord(
            "uvicorn.error", logging.ERROR, "", 0, "boom", (), sys.exc_info()
        )
    RedactTokens().filter(record)
    text = logging.Formatter().format(record)
    assert "secret.person" not in text
    assert "ValueError (message withheld)" in text
    assert "test_security.py" in text


def test_hsts_only_over_https(settings, letter):
    from starlette.testclient import TestClient

    from letters.app import create_app

    with TestClient(create_app(settings)) as client:
        assert "strict-transport-security" not in client.get("/").headers
    settings.base_url = "https://letters.example"
    with TestClient(create_app(settings)) as client:
        response = client.get("/letters/test-letter/manage")
        assert response.headers["strict-transport-security"] == "max-age=31536000"
        assert "Secure" in response.headers["set-cookie"]
