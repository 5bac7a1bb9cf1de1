"""A founding round in a real browser: axe-core on the authors' round page, the secret
page, and a founding signer's confirmation (none of them has a script)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.authors.helpers import DRAFT, SESSION_COOKIE, make_author, session_cookie
from tests.browser.helpers import assert_accessible, link_in_email
from tests.conftest import Mailbox
from tests.helpers import csrf_from
from tests.live import Server, http_client, running_server

SLUG = DRAFT["slug"]


@pytest.fixture
def server(database_url: str, mailbox: Mailbox, tmp_path: Path) -> Iterator[Server]:
    with running_server(database_url, tmp_path, smtp_url=mailbox.url, CACHE_SECONDS="0") as live:
        yield live


@pytest.fixture
def page(browser: Browser, server: Server) -> Iterator[Page]:
    context = browser.new_context(base_url=server.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    yield context.new_page()
    context.close()


def test_a_founding_round_from_the_authors_page_to_a_confirmed_signature_is_accessible(
    page: Page, server: Server, mailbox: Mailbox, engine: Any
):
    cookie = session_cookie(engine, make_author(engine, "ada@example.org"))
    with http_client(server.url, cookies={SESSION_COOKIE: cookie}) as client:
        form = client.get("/authors/letters/new").text
        data = {"csrftoken": csrf_from(form), "action": "save", **DRAFT}
        assert client.post("/authors/letters/new", data=data).status_code == 303
    page.context.add_cookies([{"name": SESSION_COOKIE, "value": cookie, "url": server.url}])

    page.goto(f"/authors/letters/{SLUG}/founding")
    assert_accessible(page)
    page.get_by_role("button", name="Open a founding round").click()
    expect(page.get_by_role("status")).to_contain_text("The founding round is open")
    assert_accessible(page)
    page.get_by_label("Launch time").fill("2020-01-01T09:00")
    page.get_by_role("button", name="Plan the launch").click()
    expect(page.get_by_role("alert")).to_be_visible()
    assert_accessible(page)
    link = page.get_by_label("Founding link").input_value()

    page.goto(link)
    assert_accessible(page)
    page.get_by_label("Work email address", exact=True).fill("grace@github.com")
    page.get_by_label("Your name").fill("Grace")
    page.get_by_role("button", name="Sign and send my link").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your work email")
    assert_accessible(page)

    page.goto(link_in_email(server, mailbox, "grace@github.com"))
    assert_accessible(page)
    page.get_by_role("button", name="Confirm my signature").click()
    expect(page.locator("main")).to_contain_text("when its authors publish it")
    assert_accessible(page)
