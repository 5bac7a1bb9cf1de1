"""Slow, vanishing and numerous clients: none of them holds the server or fills its log."""

from __future__ import annotations

import logging
import stat
from typing import Any

import anyio
from starlette.testclient import TestClient

from letters.app import create_app
from letters.spreadsheet import cell, to_csv
from letters.web import api
from tests.conftest import make_settings

FORM = {"type": "http", "method": "POST", "scheme": "http", "server": ("testserver", 80)}


def raw_post(client: TestClient, path: str, parts: list[bytes | None]) -> list[dict[str, Any]]:
    """POST a form body part by part straight into the app; None stalls forever, b"" with
    a disconnect after it models a client that goes away. What the app sent back."""
    headers = [
        (b"host", b"testserver"),
        (b"content-type", b"application/x-www-form-urlencoded"),
        (b"sec-fetch-site", b"same-origin"),
    ]
    scope = FORM | {
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": headers,
    }
    sent: list[dict[str, Any]] = []
    queue = list(parts)

    async def receive() -> dict[str, Any]:
        if not queue:
            return {"type": "http.disconnect"}
        part = queue.pop(0)
        if part is None:
            await anyio.sleep_forever()
        return {"type": "http.request", "body": part, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def call() -> None:
        await client.app(scope, receive, send)

    assert client.portal is not None
    client.portal.call(call)
    return sent


def test_a_body_that_stalls_is_answered_408(database_url, tmp_path, letter):
    settings = make_settings(database_url, instance_path=tmp_path, body_read_timeout=0.2)
    with TestClient(create_app(settings)) as client:
        sent = raw_post(client, "/letters/test-letter/sign", [b"email=a%40micro", None])
    assert sent[0]["status"] == 408


def test_a_client_leaving_mid_body_leaves_no_error_in_the_log(client, letter, caplog):
    caplog.set_level(logging.DEBUG)
    for path in ["/letters/test-letter/sign", "/api/letters/test-letter/signatures"]:
        sent = raw_post(client, path, [b"email=a%40microsoft.com&na"])
        assert sent == [] or sent[0]["status"] < 500
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert "Traceback" not in caplog.text


def test_live_streams_beyond_the_cap_get_503_and_the_page_polls_instead(
    database_url, tmp_path, letter, monkeypatch
):
    monkeypatch.setattr(api, "EVENT_STREAM_SECONDS", 0.5)  # streams end soon, as after 5 min
    settings = make_settings(database_url, instance_path=tmp_path, event_streams_max=1)
    app = create_app(settings)
    with TestClient(app) as client:
        app.state.event_streams.open = 1  # one stream already open in this process
        response = client.get("/api/letters/test-letter/events")
        assert response.status_code == 503
        assert response.headers["retry-after"]
        assert response.json()["error"]["code"] == "too_many_streams"
        app.state.event_streams.open = 0
        with client.stream("GET", "/api/letters/test-letter/events") as stream:
            assert stream.status_code == 200
            assert next(stream.iter_lines()).startswith("retry:")
        assert app.state.event_streams.open == 0  # a stream that ended gave its place back


def test_the_sqlite_database_is_readable_by_its_owner_only(tmp_path):
    folder = tmp_path / "data"
    url = f"sqlite:///{folder / 'letters.db'}"
    settings = make_settings(url, instance_path=tmp_path)
    with TestClient(create_app(settings)):
        pass
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for file in folder.iterdir():  # the database, and its -wal and -shm while open
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, file.name


def test_every_formula_start_is_neutralized_in_csv_cells():
    for start in "=+-@|%\t\r\uff1d\uff0b\uff0d\uff20\uff5c":
        assert cell(start + "1+1").startswith("'"), repr(start)
    assert cell("Ada Lovelace") == "Ada Lovelace"
    assert cell(None) == ""
    assert to_csv([["=cmd", "x"], [1, None]]) == "'=cmd,x\r\n1,\r\n"
