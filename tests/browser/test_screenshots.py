"""Screenshots of the letter and tally pages, on a desktop and on a phone.

They go to a tmp dir, or to docs/screenshots with LETTERS_SCREENSHOTS=1 (to regenerate the
committed ones; see docs/browser-tests.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import DESKTOP, PHONE, OpenPage
from tests.browser.helpers import DEMO, demo_with_signatures
from tests.conftest import Mailbox
from tests.live import Server

MAX_BYTES = 400 * 1024
PNG = b"\x89PNG\r\n\x1a\n"


def test_screenshots_of_the_letter_and_tally_pages(
    open_page: OpenPage, server: Server, mailbox: Mailbox, engine: Any, screenshot_dir: Path
):
    demo_with_signatures(engine, server, mailbox)
    for device, viewport in [("desktop", DESKTOP), ("phone", PHONE)]:
        page = open_page(viewport=viewport, device_scale_factor=1)
        for name, path in [("letter", DEMO), ("tally", f"{DEMO}/tally")]:
            page.goto(path)
            expect(page.locator("[data-live-count] strong")).to_have_text("5")
            file = screenshot_dir / f"{name}-{device}.png"
            # A desktop shows the first screen; a phone the whole page, to show it all fits.
            page.screenshot(path=file, full_page=device == "phone", animations="disabled")
            data = file.read_bytes()
            assert data.startswith(PNG)
            assert len(data) < MAX_BYTES, f"{file.name}: {len(data)} bytes"


def test_screenshots_of_the_first_screen_of_a_letter(
    open_page: OpenPage, server: Server, mailbox: Mailbox, engine: Any, screenshot_dir: Path
):
    """What a signer sees before scrolling: the title, the count and the way to sign."""
    demo_with_signatures(engine, server, mailbox)
    for device, viewport in [("desktop", DESKTOP), ("phone", PHONE)]:
        page = open_page(viewport=viewport, device_scale_factor=1)
        page.goto(DEMO)
        expect(page.locator("[data-live-count] strong")).to_have_text("5")
        file = screenshot_dir / f"first-screen-{device}.png"
        page.screenshot(path=file, full_page=False, animations="disabled")
        data = file.read_bytes()
        assert data.startswith(PNG)
        assert len(data) < MAX_BYTES, f"{file.name}: {len(data)} bytes"


def test_screenshot_of_the_author_editor(
    open_page: OpenPage, server: Server, engine: Any, screenshot_dir: Path
):
    from tests.authors.helpers import SESSION_COOKIE, make_author, session_cookie

    author = make_author(engine, "organizer@example.org")
    page = open_page(viewport=DESKTOP, device_scale_factor=1)
    page.context.add_cookies(
        [
            {
                "name": SESSION_COOKIE,
                "value": session_cookie(engine, author),
                "url": f"{server.url}/authors",
            }
        ]
    )
    page.goto("/authors/letters/new")
    page.get_by_label("Title", exact=True).fill("Drop the contract")
    page.locator("textarea").first.fill(
        "To the leadership of our company,\n\nWe, the undersigned employees, ask you to…"
    )
    file = screenshot_dir / "editor-desktop.png"
    page.screenshot(path=file, full_page=False, animations="disabled")
    data = file.read_bytes()
    assert data.startswith(PNG)
    assert len(data) < MAX_BYTES, f"{file.name}: {len(data)} bytes"
