"""What a browser expects of a site: icons, long-lived static files, compressed text."""

from __future__ import annotations

import asyncio
import re

from starlette.responses import Response, StreamingResponse

from letters.web.assets import FOREVER, CompressReads, fingerprint
from letters.web.press import badge_svg, badge_width
from tests.helpers import letter_csrf

GZIP = {"Accept-Encoding": "gzip"}


def test_the_icons_are_where_browsers_look_for_them(client):
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200
    assert icon.headers["content-type"] == "image/x-icon"
    assert icon.content[:4] == b"\x00\x00\x01\x00"  # an ICO file
    touch = client.get("/apple-touch-icon.png")
    assert touch.status_code == 200 and touch.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_pages_link_static_files_by_fingerprint_and_those_are_kept_a_year(client, letter):
    page = client.get("/letters/test-letter").text
    stylesheets = re.findall(r'<link rel="stylesheet" href="([^"]+)"', page)
    assert stylesheets == [f"/static/css/site.css?v={fingerprint('css/site.css')}"]  # only one
    assert client.get(stylesheets[0]).headers["cache-control"] == FOREVER
    # Without the fingerprint, or with an old one: checked each time.
    for stale in ("/static/css/site.css", "/static/css/site.css?v=0000000000"):
        assert client.get(stale).headers["cache-control"] == "public, no-cache"
    assert client.get("/static/css/nothing.css?v=1").status_code == 404


def test_link_previews_have_an_absolute_raster_image(client, letter, settings):
    page = client.get("/letters/test-letter").text
    image = re.search(r'<meta property="og:image" content="([^"]+)"', page).group(1)
    assert image.startswith(settings.base_url + "/static/img/og.png?v=")
    answer = client.get(image.removeprefix(settings.base_url))
    assert answer.headers["content-type"] == "image/png"


def test_pages_are_compressed_for_browsers_that_accept_it(client, letter):
    for path in ("/letters/test-letter", "/letters/test-letter/tally", "/static/css/site.css"):
        answer = client.get(path, headers=GZIP)
        assert answer.headers["content-encoding"] == "gzip", path
        assert "Accept-Encoding" in answer.headers["vary"]
    plain = client.get("/letters/test-letter", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers


def test_answers_to_a_post_are_never_compressed(client, letter):
    """They echo what was posted next to a CSRF token: compressed, that leaks (BREACH)."""
    token = letter_csrf(client)
    refused = client.post(
        "/letters/test-letter/sign",
        data={"csrftoken": token, "email": "someone@gmail.com"},
        headers=GZIP,
    )
    assert refused.status_code == 422 and "someone@gmail.com" in refused.text
    assert "content-encoding" not in refused.headers


def test_answers_to_an_address_with_a_query_are_not_compressed(client, letter):
    """The language links repeat the address: what it asks must not sit, compressed, next
    to a CSRF token."""
    receipt_form = client.get("/letters/test-letter/receipt?guess=csrftoken", headers=GZIP)
    assert "content-encoding" not in receipt_form.headers
    assert (
        client.get("/letters/test-letter/receipt", headers=GZIP).headers.get("content-encoding")
        == "gzip"
    )


def test_event_streams_are_left_uncompressed():
    async def stream(scope, receive, send):
        async def events():
            yield b"event: count\ndata: " + b"x" * 2000 + b"\n\n"

        await StreamingResponse(events(), media_type="text/event-stream")(scope, receive, send)

    async def page(scope, receive, send):
        await Response("x" * 2000, media_type="text/html")(scope, receive, send)

    def run(app):
        sent = []

        requested = []

        async def receive():
            if requested:  # the client stays connected until the answer ends
                await asyncio.Event().wait()
            requested.append(True)
            return {"type": "http.request", "body": b""}

        async def send(message):
            sent.append(message)

        scope = {
            "type": "http",
            "method": "GET",
            "path": "/",
            "query_string": b"",
            "headers": [(b"accept-encoding", b"gzip")],
        }
        asyncio.run(CompressReads(app)(scope, receive, send))
        return dict(sent[0]["headers"])

    assert b"content-encoding" not in run(stream)
    assert run(page)[b"content-encoding"] == b"gzip"


def test_the_badge_on_the_tally_page_has_its_size(client, letter):
    page = client.get("/letters/test-letter/tally").text
    assert f'width="{badge_width(0)}" height="20"' in page
    assert f'width="{badge_width(1234)}" height="20"' in badge_svg(1234)
