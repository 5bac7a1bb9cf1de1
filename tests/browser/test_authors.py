"""Author pages in a real browser: axe-core on each, and the whole path done with the keyboard.

Like the other browser tests, these drive the system's Chromium (the package's `browser`
fixture) and are skipped without it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from letters.authors.accounts import add_admin
from tests.browser.conftest import PHONE
from tests.browser.helpers import assert_accessible, horizontal_overflow, tab_to
from tests.conftest import Mailbox, make_letter
from tests.helpers import confirm_api, sign_api
from tests.live import Server, http_client, running_server

SLUG = "keyboard-letter"


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


def press_on(page: Page, locator: Any) -> None:
    """Reach a control with Tab and use it with Enter, as a keyboard user would (each of
    them here leads to another page)."""
    tab_to(page, locator)
    enter(page)


def enter(page: Page) -> None:
    with page.expect_navigation():
        page.keyboard.press("Enter")


def type_into(page: Page, label: str, text: str, within: Any = None) -> None:
    tab_to(page, (within or page).get_by_label(label, exact=True))
    page.keyboard.press("Control+A")
    page.keyboard.type(text)


def sign_in_link(server: Server, mailbox: Mailbox, to: str) -> str:
    mailbox.wait_for(1, timeout=10)
    for message in reversed(mailbox.messages):
        if message["To"] == to:
            match = re.search(
                re.escape(server.url) + r"/authors/sign-in/\S+", mailbox.text_of(message)
            )
            assert match
            return match.group(0)
    raise AssertionError(f"no email to {to}")


def test_an_author_does_everything_with_the_keyboard_on_accessible_pages(
    page: Page, server: Server, mailbox: Mailbox, engine: Any
):
    add_admin(engine, "ada@example.org")
    page.goto("/authors/sign-in")
    assert_accessible(page)
    type_into(page, "Email address", "ada@example.org")
    enter(page)
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your email")
    assert_accessible(page)

    page.goto(sign_in_link(server, mailbox, "ada@example.org"))
    assert_accessible(page)
    press_on(page, page.get_by_role("button", name="Sign in"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Your letters")
    assert_accessible(page)

    press_on(page, page.get_by_role("link", name="Start a new letter"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Start a letter")
    assert_accessible(page)
    tab_to(page, page.get_by_label("Title", exact=True))
    enter(page)  # nothing typed yet: errors, tied to their fields
    expect(page.get_by_role("alert")).to_be_visible()
    expect(page.get_by_label("Title", exact=True)).to_have_attribute("aria-invalid", "true")
    assert_accessible(page)

    type_into(page, "Title", "Keyboard letter")
    type_into(page, "Text of the letter", "We ask for **keyboards**.")
    first_row = page.get_by_role("group", name="Domain 1")
    type_into(page, "Email domain", "github.com", first_row)
    type_into(page, "Organization name shown for it", "GitHub", first_row)
    press_on(page, page.get_by_role("button", name="Preview the text"))
    expect(page.locator(".preview strong")).to_have_text("keyboards")
    assert_accessible(page)
    tab_to(page, page.get_by_label("Title", exact=True))
    enter(page)  # Enter in a field saves (never previews or publishes)
    expect(page.get_by_role("status")).to_have_text("Saved.")
    assert_accessible(page)

    press_on(page, page.get_by_role("button", name="Publish this letter"))
    expect(page.get_by_role("status")).to_contain_text("Published")
    with http_client(server.url) as client:
        for email, name in [("grace@github.com", "Grace"), ("quiet@github.com", "")]:
            count = len(mailbox.messages)
            assert sign_api(client, email, slug=SLUG, name=name, show_name=bool(name)).is_success
            mailbox.wait_for(count + 1, timeout=10)
            assert confirm_api(client, mailbox.last_token(to=email)).status_code == 200

    press_on(page, page.get_by_role("link", name="Revise text"))
    type_into(page, "Text of the letter", "We ask for **better keyboards**.")
    type_into(page, "What changed, for readers", "Better keyboards.")
    press_on(page, page.get_by_role("button", name="Preview the changes"))
    expect(page.locator(".diff")).to_be_visible()
    assert_accessible(page)
    press_on(page, page.get_by_role("button", name="Publish version 2"))
    expect(page.get_by_role("status")).to_contain_text("Version 2 is published")

    press_on(page, page.get_by_role("link", name="Signatures"))
    assert_accessible(page)
    press_on(page, page.get_by_role("button", name=re.compile(r"^Hide name\W+Grace$")))
    expect(page.get_by_role("status")).to_contain_text("The name is hidden")
    press_on(page, page.get_by_role("link", name=re.compile(r"^Invalidate\W+hidden")).first)
    assert_accessible(page)
    tab_to(page, page.get_by_label("Spam or abuse"))
    page.keyboard.press("Space")
    press_on(page, page.get_by_role("button", name="Invalidate this signature"))
    expect(page.get_by_role("status")).to_contain_text("no longer counts")

    for link in ["Settings", "Co-authors", "Audit log", "Export", "Overview"]:
        press_on(
            page, page.get_by_role("navigation", name="This letter").get_by_role("link", name=link)
        )
        assert_accessible(page)
    press_on(page, page.get_by_role("button", name="Close this letter"))
    expect(page.get_by_role("status")).to_contain_text("Closed")

    for path in [f"/letters/{SLUG}/history", f"/letters/{SLUG}/history/2", "/authors/admin"]:
        page.goto(path)
        assert_accessible(page)


def test_author_pages_fit_a_phone(browser: Browser, server: Server, engine: Any):
    from tests.authors.helpers import make_author, session_cookie

    author = make_author(engine, "ada@example.org", admin=True)
    make_letter(engine, "imported-letter")  # listed for the admin, with a button to join it
    context = browser.new_context(base_url=server.url, viewport=PHONE)
    context.add_cookies(
        [{"name": "letters_author", "value": session_cookie(engine, author), "url": server.url}]
    )
    page = context.new_page()
    for path in ["/authors", "/authors/letters/new", "/authors/admin"]:
        page.goto(path)
        assert horizontal_overflow(page) == 0, path
        assert_accessible(page)
    context.close()


def test_an_admin_joins_an_imported_letter_with_the_keyboard(
    browser: Browser, page: Page, server: Server, engine: Any
):
    from tests.authors.helpers import make_author, session_cookie

    make_letter(engine, "imported-letter")
    admin = make_author(engine, "ada@example.org", admin=True)
    page.context.add_cookies(
        [{"name": "letters_author", "value": session_cookie(engine, admin), "url": server.url}]
    )
    page.goto("/authors")
    expect(page.get_by_role("heading", name="Every public letter")).to_be_visible()
    assert_accessible(page)
    press_on(page, page.get_by_role("button", name="Become the owner of Test letter"))
    assert page.url.endswith("/authors/letters/imported-letter")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Test letter")
    assert_accessible(page)
