"""Slow, vanishing and numerous clients: none of them holds the server or fills its log."""

from __future__ import annotations

import logging
import stat
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import StreamingResponse
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
    database_url, tmp_path, letter
):
    settings = make_settings(database_url, instance_path=tmp_path, event_streams_max=1)
    app = create_app(settings)
    events = "/api/letters/test-letter/events"
    with TestClient(app) as client:
        streams = app.state.event_streams

        async def one_stream() -> list[int]:
            """Open a stream as the server would, read its first event, close it: the
            number of open streams at each step."""
            scope = {
                "type": "http",
                "method": "GET",
                "path": events,
                "headers": [],
                "query_string": b"",
                "path_params": {"slug": "test-letter"},
                "app": app,
            }
            response = await api.events(Request(scope))
            assert isinstance(response, StreamingResponse)
            seen = [streams.open]
            body = response.body_iterator
            assert str(await body.__anext__()).startswith("retry:")
            seen.append(streams.open)
            refused = await api.events(Request(scope))  # a second reader meanwhile
            seen.append(refused.status_code)
            await body.aclose()  # type: ignore[attr-defined]
            seen.append(streams.open)
            return seen

        assert client.portal is not None
        # Not counted before it starts; counted while open (a second reader gets 503);
        # its place given back when it ends.
        assert client.portal.call(one_stream) == [0, 1, 503, 0]

        streams.open = 1  # as if a stream were open in this process
        refused = client.get(events)
        assert refused.status_code == 503
        assert int(refused.headers["retry-after"]) > 0
        assert refused.json()["error"]["code"] == "too_many_streams"


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
