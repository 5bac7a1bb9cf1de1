"""Embeddable views of the count."""

from __future__ import annotations

from letters.web.press import badge_svg
from tests.helpers import confirm_api, sign_api


def test_the_badge_shows_the_live_count(client, letter, mailbox):
    first = client.get("/letters/test-letter/badge.svg")
    assert first.status_code == 200
    assert first.headers["content-type"] == "image/svg+xml"
    assert ">0</text>" in first.text
    assert 'aria-label="0 verified signatures"' in first.text
    sign_api(client, "a@microsoft.com")
    confirm_api(client, mailbox.last_token())
    assert ">1</text>" in client.get("/letters/test-letter/badge.svg").text
    assert (
        client.get(
            "/letters/test-letter/badge.svg", headers={"If-None-Match": first.headers["etag"]}
        ).status_code
        == 200
    )


def test_the_badge_of_a_draft_or_unknown_letter_is_404(client, engine):
    from tests.conftest import make_letter

    make_letter(engine, "draft-badge", status="draft")
    assert client.get("/letters/draft-badge/badge.svg").status_code == 404
    assert client.get("/letters/nope/badge.svg").status_code == 404


def test_badge_numbers_are_grouped():
    assert ">1,234,567</text>" in badge_svg(1234567)


def test_only_the_widget_may_be_framed(client, letter):
    widget = client.get("/letters/test-letter/widget")
    assert widget.status_code == 200
    assert "frame-ancestors *" in widget.headers["content-security-policy"]
    assert "x-frame-options" not in widget.headers
    assert "<strong>0</strong> verified signatures" in widget.text
    assert "<form" not in widget.text
    for path in ["/letters/test-letter", "/letters/test-letter/tally", "/", "/api/letters"]:
        headers = client.get(path).headers
        assert headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert client.get("/letters/nope/widget").status_code == 404


def test_the_tally_page_offers_copy_paste_snippets(client, letter):
    page = client.get("/letters/test-letter/tally").text
    assert '&lt;img src="http://testserver/letters/test-letter/badge.svg"' in page
    assert "/letters/test-letter/widget" in page
