"""Helpers the browser tests share: another signer, axe checks, keyboard focus, layout."""

from __future__ import annotations

import re
import time
from typing import Any

from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Locator, Page

from letters.importer import load_demo
from tests.conftest import Mailbox
from tests.helpers import confirm_api, sign_api
from tests.live import Server, http_client

AXE = Axe()
BLOCKING = ("serious", "critical")
MAX_TABS = 60
DEMO = "/letters/microsoft-end-ice-contract"


def sign_and_confirm_elsewhere(
    server: Server, mailbox: Mailbox, email: str, slug: str = "test-letter", **fields: Any
) -> None:
    """Another signer, through the JSON API (not this test's browser): sign, then confirm."""
    expected = len(mailbox.messages) + 1
    with http_client(server.url) as client:
        response = sign_api(client, email, slug=slug, **fields)
        assert response.status_code == 202, response.text
        mailbox.wait_for(expected, timeout=10)
        confirmed = confirm_api(client, mailbox.last_token(to=email))
        assert confirmed.status_code == 200, confirmed.text


def demo_with_signatures(engine: Any, server: Server, mailbox: Mailbox) -> None:
    """The demo letter (long, with a title field) with named and hidden signatures."""
    load_demo(engine)
    signers = [
        ("margaret.hamilton@microsoft.com", "Margaret Hamilton", "Principal Software Engineer"),
        ("katherine.johnson@github.com", "Katherine Johnson", "Staff Data Scientist"),
        ("dorothy.vaughan@linkedin.com", "Dorothy Vaughan", ""),
        ("hidden.one@microsoft.com", "", ""),
        ("hidden.two@github.com", "", ""),
    ]
    for email, name, title in signers:
        sign_and_confirm_elsewhere(
            server,
            mailbox,
            email,
            slug=DEMO.rsplit("/", 1)[1],
            name=name,
            title=title,
            show_name=bool(name),
        )


def link_in_email(server: Server, mailbox: Mailbox, to: str, timeout: float = 10.0) -> str:
    """The link in the latest email to `to` (waiting for it), as the signer's mail app shows it."""
    deadline = time.monotonic() + timeout
    while True:
        for message in reversed(list(mailbox.messages)):
            if message["To"] == to:
                link = re.search(re.escape(server.url) + r"/verify/\S+", mailbox.text_of(message))
                assert link, "no link to this server in the email"
                return link.group(0)
        assert time.monotonic() < deadline, f"no email to {to} in {timeout}s"
        time.sleep(0.05)


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's violations on the page as it is now, every impact."""
    return list(AXE.run(page).response["violations"])


def describe(violations: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"{v['id']} ({v['impact']}): {v['help']} at "
        + ", ".join(" ".join(node["target"]) for node in v["nodes"])
        for v in violations
    )


def assert_accessible(page: Page) -> None:
    """No serious or critical axe-core violations on the page as it is now."""
    blocking = [v for v in axe_violations(page) if v["impact"] in BLOCKING]
    assert not blocking, f"{page.url}:\n{describe(blocking)}"


def sign_form(page: Page) -> Locator:
    """The letter page's signing form (the page may hold other forms)."""
    return page.get_by_role("region", name="Sign this letter")


def is_focused(locator: Locator) -> bool:
    return bool(locator.evaluate("element => element === document.activeElement"))


def tab_to(page: Page, locator: Locator) -> int:
    """Press Tab until `locator` has the focus; return how many presses it took."""
    for presses in range(1, MAX_TABS + 1):
        page.keyboard.press("Tab")
        if is_focused(locator):
            return presses
    raise AssertionError(f"{MAX_TABS} presses of Tab never reached {locator}")


def outline(locator: Locator) -> tuple[str, float]:
    """The element's outline style and width in CSS pixels (the focus ring here)."""
    style, width = locator.evaluate(
        "e => [getComputedStyle(e).outlineStyle, getComputedStyle(e).outlineWidth]"
    )
    return str(style), float(str(width).removesuffix("px") or 0)


def horizontal_overflow(page: Page) -> int:
    """How many CSS pixels the page is wider than the viewport (0: no sideways scrolling)."""
    return int(page.evaluate("document.documentElement.scrollWidth - window.innerWidth"))
