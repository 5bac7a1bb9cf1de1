"""Mobile first: pages fit a 375 px phone, and the letter page is light and self-contained."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from playwright.sync_api import Request, expect

from letters.importer import load_demo
from tests.browser.conftest import PHONE, OpenPage
from tests.browser.helpers import DEMO, demo_with_signatures, horizontal_overflow, sign_form
from tests.conftest import Mailbox
from tests.live import Server

BUDGET_BYTES = 100 * 1024
# What a page is made of, as the browser names it; the event stream is left out: it stays
# open as long as the page does and carries a few hundred bytes per change of the count.
PAGE_PARTS = {"document", "stylesheet", "script", "image", "font", "fetch"}


def test_pages_fit_a_phone_without_sideways_scrolling(
    open_page: OpenPage, server: Server, mailbox: Mailbox, engine: Any
):
    demo_with_signatures(engine, server, mailbox)
    page = open_page(viewport=PHONE)
    for path in [
        "/",
        DEMO,
        f"{DEMO}/signatures",
        f"{DEMO}/tally",
        f"{DEMO}/check-email",
        "/verify/not-a-real-token",
        "/letters/no-such-letter",
    ]:
        page.goto(path)
        assert horizontal_overflow(page) == 0, f"{path} scrolls sideways at 375 px"

    page.goto(DEMO)
    form = sign_form(page)
    form.get_by_label("Work email address", exact=True).fill("someone@gmail.com")
    form.get_by_role("button", name="Sign and send my link").click()
    expect(page.get_by_role("alert")).to_be_visible()
    assert horizontal_overflow(page) == 0, "the form with an error scrolls sideways"
    button = form.get_by_role("button", name="Sign and send my link").bounding_box()
    assert button is not None and button["height"] >= 44, "a comfortable target for a thumb"


def test_the_widget_fits_its_frame(open_page: OpenPage, server: Server, engine: Any):
    load_demo(engine)  # its title takes two lines
    page = open_page(viewport={"width": 320, "height": 110})  # the iframe snippet's size
    page.goto(f"{DEMO}/widget")
    size = page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.scrollHeight]"
    )
    assert size[0] <= 320 and size[1] <= 110, size


def test_the_letter_page_is_light_and_talks_only_to_its_server(
    open_page: OpenPage, server: Server, mailbox: Mailbox, engine: Any
):
    demo_with_signatures(engine, server, mailbox)
    page = open_page(viewport=PHONE)
    requested: list[Request] = []
    finished: list[Request] = []
    page.on("request", lambda request: requested.append(request))
    page.on("requestfinished", lambda request: finished.append(request))
    with page.expect_response(lambda response: response.url.endswith("/events")):
        page.goto(DEMO)
    page.wait_for_load_state("load")

    own = urlsplit(server.url).netloc
    hosts = {urlsplit(request.url).netloc for request in requested} - {""}
    assert hosts == {own}, f"requests to other hosts: {hosts - {own}}"
    parts = [request for request in finished if request.resource_type in PAGE_PARTS]
    assert {request.resource_type for request in parts} >= {"document", "stylesheet", "script"}
    sizes = {
        request.url: request.sizes()["responseHeadersSize"] + request.sizes()["responseBodySize"]
        for request in parts
    }
    total = sum(sizes.values())
    assert total < BUDGET_BYTES, f"{total} bytes: {sizes}"
