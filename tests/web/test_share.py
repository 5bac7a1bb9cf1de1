"""The QR code of a letter's address and its printable flyer (decoded for real in
tests/browser/test_share.py)."""

from __future__ import annotations

import re

from tests.conftest import make_letter


def test_the_qr_code_is_an_svg_of_the_letters_address(client, letter):
    response = client.get("/letters/test-letter/qr.svg")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/svg+xml"
    assert response.text.startswith("<?xml") and "<svg" in response.text
    assert "<title>http://testserver/letters/test-letter</title>" in response.text
    assert "public" in response.headers["cache-control"]
    again = client.get(
        "/letters/test-letter/qr.svg", headers={"If-None-Match": response.headers["etag"]}
    )
    assert again.status_code == 304
    # The same image whatever the reader's language.
    spanish = client.get("/letters/test-letter/qr.svg", headers={"Accept-Language": "es"})
    assert spanish.content == response.content


def test_drafts_and_unknown_letters_have_no_code_or_flyer(client, engine):
    make_letter(engine, "a-draft", status="draft")
    for slug in ("a-draft", "no-such-letter"):
        assert client.get(f"/letters/{slug}/qr.svg").status_code == 404
        assert client.get(f"/letters/{slug}/flyer").status_code == 404


def test_the_flyer_has_the_title_an_excerpt_the_count_the_code_the_address_and_privacy(
    client, letter
):
    response = client.get("/letters/test-letter/flyer")
    assert response.status_code == 200
    page = response.text
    assert "<h1>Test letter</h1>" in page
    assert "We ask for better things." in page
    assert "<strong>0</strong> verified signatures on" in page
    assert re.search(
        r'<div class="code" role="img" aria-label="QR code of the letter[^"]*http://testserver/letters/test-letter"><svg',
        page,
    )
    assert '<p class="url">http://testserver/letters/test-letter</p>' in page
    assert "Your name stays hidden unless you choose to show it." in page
    assert 'href="/static/css/flyer.css?v=' in page
    spanish = client.get("/letters/test-letter/flyer", headers={"Accept-Language": "es"}).text
    assert 'lang="es"' in spanish


def test_the_letter_page_links_to_the_flyer_qr_code_and_feed(client, letter):
    page = client.get("/letters/test-letter").text
    for path in (
        "/letters/test-letter/flyer",
        "/letters/test-letter/qr.svg",
        "/letters/test-letter/feed.atom",
    ):
        assert f'href="{path}"' in page
