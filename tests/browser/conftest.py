"""Fixtures for tests in a real browser: one Chromium per session, a running server per test.

Playwright drives the system's Chromium (Debian's `chromium` package at /usr/bin/chromium,
or the path in LETTERS_CHROMIUM), since `playwright install` cannot download browsers
everywhere. Without a browser these tests are skipped, so a newcomer's run stays green.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from tests.conftest import Mailbox
from tests.live import Server, running_server

CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
REPO = Path(__file__).resolve().parents[2]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 375, "height": 812}  # an iPhone's CSS width, the narrowest common phone
TIMEOUT_MS = 10_000


def chromium_path() -> str | None:
    """The Chromium to drive: LETTERS_CHROMIUM if set, else the Debian package's, else PATH's."""
    configured = os.environ.get("LETTERS_CHROMIUM", "")
    candidates = [configured] if configured else [*CHROMIUM_PATHS, shutil.which("chromium")]
    return next((path for path in candidates if path and os.access(path, os.X_OK)), None)


@pytest.fixture(scope="package", autouse=True)
def browser() -> Iterator[Browser]:
    """One headless Chromium for all the browser tests (each test gets its own context).

    Package scope, not session: while Playwright's sync API is open, its event loop counts
    as running in this thread, so the other tests' `asyncio.run` would fail until it closes.
    """
    path = chromium_path()
    if path is None:
        where = os.environ.get("LETTERS_CHROMIUM") or " or ".join(CHROMIUM_PATHS)
        pytest.skip(
            f"browser tests need Chromium, not found at {where}: "
            "install it (apt-get install chromium) or set LETTERS_CHROMIUM to its path"
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=path, headless=True, args=["--no-sandbox", "--headless=new"]
        )
        yield launched
        launched.close()


@pytest.fixture
def server(database_url: str, letter: Any, mailbox: Mailbox, tmp_path: Path) -> Iterator[Server]:
    """`letters serve` on this test's database, mailing to this test's SMTP server.

    CACHE_SECONDS=0: the tests change rows behind the server's back (fixtures, the JSON API
    from another client) and expect every page to show them at once.
    """
    with running_server(database_url, tmp_path, smtp_url=mailbox.url, CACHE_SECONDS="0") as live:
        yield live


OpenPage = Callable[..., Page]


@pytest.fixture
def open_page(browser: Browser, server: Server) -> Iterator[OpenPage]:
    """Open a page in a fresh browser context (its own cookies) aimed at the server.

    Keyword arguments go to `Browser.new_context` (viewport, java_script_enabled, ...).
    """
    contexts: list[BrowserContext] = []

    def open_(**options: Any) -> Page:
        options.setdefault("viewport", DESKTOP)
        context = browser.new_context(base_url=server.url, **options)
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        return context.new_page()

    yield open_
    for context in contexts:
        context.close()


@pytest.fixture
def page(open_page: OpenPage) -> Page:
    return open_page()


@pytest.fixture
def screenshot_dir(tmp_path: Path) -> Path:
    """docs/screenshots when LETTERS_SCREENSHOTS=1 (to regenerate them), else a tmp dir."""
    if os.environ.get("LETTERS_SCREENSHOTS") == "1":
        path = REPO / "docs" / "screenshots"
        path.mkdir(parents=True, exist_ok=True)
        return path
    return tmp_path
