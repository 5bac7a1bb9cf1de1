"""Open pages keep their count current (Server-Sent Events) while others sign elsewhere."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.browser.conftest import OpenPage
from tests.browser.helpers import sign_and_confirm_elsewhere
from tests.conftest import Mailbox
from tests.live import Server

LIVE_PAGES = ["/letters/test-letter", "/letters/test-letter/tally", "/letters/test-letter/widget"]


def open_listening(page: Page, path: str) -> Page:
    """Open `path` and wait until its script has connected to the event stream."""
    with page.expect_response(lambda response: response.url.endswith("/events")) as stream:
        page.goto(path)
    assert stream.value.status == 200
    assert stream.value.headers["content-type"].startswith("text/event-stream")
    return page


def says(phrase: str) -> re.Pattern[str]:
    """The live count's text, starting with `phrase` (the tally page adds "as of ...")."""
    return re.compile(r"^\s*" + r"\s+".join(map(re.escape, phrase.split())) + r"\b")


def organizations(page: Page) -> list[list[str]]:
    rows = page.locator("[data-live-orgs] tbody tr")
    return [row.locator("td").all_inner_texts() for row in rows.all()]


def test_counts_change_on_open_pages_when_a_signature_is_confirmed_elsewhere(
    open_page: OpenPage, server: Server, mailbox: Mailbox
):
    for email in ("first@microsoft.com", "second@microsoft.com"):
        sign_and_confirm_elsewhere(server, mailbox, email)
    first = open_page()
    pages = [
        open_listening(first if n == 0 else first.context.new_page(), path)
        for n, path in enumerate(LIVE_PAGES)
    ]
    letter, tally, _ = pages
    for page in pages:
        count = page.locator("[data-live-count]")
        expect(count).to_have_text(says("2 verified signatures"))
        expect(count).to_have_attribute("aria-live", "polite")
        expect(count).to_have_attribute("aria-atomic", "true")  # read out whole
    assert organizations(letter) == [["Microsoft", "2"]]
    as_of = tally.locator("[data-live-as-of]").get_attribute("datetime")

    sign_and_confirm_elsewhere(server, mailbox, "third@github.com")

    for page in pages:  # no reload: the script hears it from the event stream
        expect(page.locator("[data-live-count]")).to_have_text(says("3 verified signatures"))
    for page in (letter, tally):  # a new organization gets its row
        assert organizations(page) == [["Microsoft", "2"], ["GitHub", "1"]]
    assert tally.locator("[data-live-as-of]").get_attribute("datetime") != as_of
