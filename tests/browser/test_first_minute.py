"""A signer's first minute, measured in Chromium: a way to sign on the first screen, errors
where the eye is, and a confirmation that survives a reload and offers a next step."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.browser.conftest import DESKTOP, OpenPage
from tests.browser.helpers import DEMO, assert_accessible, link_in_email, sign_form
from tests.conftest import Mailbox
from tests.live import Server

SMALL_PHONE = {"width": 375, "height": 667}
TALL_PHONE = {"width": 375, "height": 812}
VIEWPORTS = {"desktop": DESKTOP, "small-phone": SMALL_PHONE, "phone": TALL_PHONE}
EMAIL = "ada.lovelace@microsoft.com"


def bottom(locator: Locator) -> float:
    box = locator.bounding_box()
    assert box is not None, f"{locator} is not shown"
    return float(box["y"] + box["height"])


def in_view(page: Page, locator: Locator) -> bool:
    box = locator.bounding_box()
    height = page.viewport_size["height"] if page.viewport_size else 0
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= height


@pytest.mark.parametrize("viewport", VIEWPORTS.values(), ids=VIEWPORTS.keys())
@pytest.mark.parametrize("javascript", [True, False], ids=["javascript", "no-javascript"])
def test_the_first_screen_shows_the_title_the_count_and_a_way_to_sign(
    open_page: OpenPage, engine: Any, viewport: dict[str, int], javascript: bool
):
    from letters.importer import load_demo

    load_demo(engine)  # a long letter, with a long title
    page = open_page(viewport=viewport, java_script_enabled=javascript)
    page.goto(DEMO)
    sign = page.get_by_role("link", name="Sign this letter")
    for part in (page.get_by_role("heading", level=1), page.locator("[data-live-count]"), sign):
        assert in_view(page, part), part
    # The letter is not pushed off the screen: its first lines are there too.
    assert bottom(page.locator(".letter .body p").first) <= viewport["height"]

    sign.click()  # the link leads to the form, its first field in view
    assert in_view(page, sign_form(page).get_by_label("Work email address", exact=True))


@pytest.mark.parametrize("javascript", [True, False], ids=["javascript", "no-javascript"])
def test_after_a_refused_address_the_error_summary_has_the_focus_and_the_address_opens_the_form(
    open_page: OpenPage, server: Server, engine: Any, javascript: bool
):
    from letters.importer import load_demo

    load_demo(engine)
    page = open_page(viewport=SMALL_PHONE, java_script_enabled=javascript)
    page.goto(DEMO)
    form = sign_form(page)
    form.get_by_label("Work email address", exact=True).fill("someone@gmail.com")
    with page.expect_response(lambda response: response.request.method == "POST") as answer:
        form.get_by_role("button", name="Sign and send my link").click()
    assert answer.value.status == 422

    summary = page.get_by_role("alert")
    expect(summary).to_be_focused()
    assert in_view(page, summary)
    summary.get_by_role("link").click()  # each message leads to its field
    expect(form.get_by_label("Work email address", exact=True)).to_be_focused()
    if javascript:  # axe-core runs as a script in the page
        assert_accessible(page)

    # The address the bar shows now (…/sign) opens the form, not "Method Not Allowed".
    bar = page.url.split("#")[0]  # as bookmarked, or opened again later
    assert bar == f"{server.url}{DEMO}/sign"
    page.goto(bar)
    assert page.url == f"{server.url}/en{DEMO}#sign"  # the form, in the reader's language
    assert in_view(page, sign_form(page).get_by_role("heading", name="Sign this letter"))
    expect(page.get_by_role("alert")).to_have_count(0)


def confirm_in_browser(page: Page, server: Server, mailbox: Mailbox) -> None:
    page.goto("/letters/test-letter")
    form = sign_form(page)
    form.get_by_label("Work email address", exact=True).fill(EMAIL)
    form.get_by_role("button", name="Sign and send my link").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your work email")
    page.goto(link_in_email(server, mailbox, EMAIL))
    page.get_by_role("button", name="Confirm my signature").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "Thank you, your signature is verified"
    )


@pytest.mark.parametrize("javascript", [True, False], ids=["javascript", "no-javascript"])
def test_reloading_the_confirmation_says_the_signature_is_counted(
    open_page: OpenPage, server: Server, mailbox: Mailbox, javascript: bool
):
    page = open_page(java_script_enabled=javascript)
    confirm_in_browser(page, server, mailbox)
    expect(page.locator(".receipt-code")).to_have_count(1)
    share = page.get_by_role("region", name="Pass it on")
    expect(share.get_by_label("The letter's address")).to_have_value(
        f"{server.url}/letters/test-letter"
    )
    expect(share.get_by_role("link", name="By email")).to_be_visible()  # plain links
    if javascript:  # axe-core runs as a script in the page
        assert_accessible(page)

    with page.expect_response(lambda response: "/verify/" in response.url) as answer:
        page.reload()
    assert answer.value.status == 200
    expect(page.get_by_role("heading", level=1)).to_have_text("Your signature is counted")
    expect(page.locator(".receipt-code")).to_have_count(0)  # shown once, never stored
    expect(page.get_by_role("main")).to_contain_text("now has 1 verified signature.")
    expect(page.get_by_role("region", name="Pass it on")).to_be_visible()
    if javascript:
        assert_accessible(page)


def test_the_receipt_and_the_address_have_copy_buttons(
    open_page: OpenPage, server: Server, mailbox: Mailbox
):
    page = open_page(permissions=["clipboard-read", "clipboard-write"])
    confirm_in_browser(page, server, mailbox)
    receipt = page.locator(".receipt-code").inner_text()

    page.get_by_role("button", name="Copy the receipt").click()
    expect(page.locator(".receipt .copied")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == receipt
    page.get_by_role("button", name="Copy the address").click()
    assert page.evaluate("navigator.clipboard.readText()") == f"{server.url}/letters/test-letter"

    # The receipt page finds it however it is typed.
    page.goto("/letters/test-letter/receipt")
    page.get_by_label("Your receipt").fill(receipt.upper())
    page.get_by_role("button", name="Check", exact=True).click()
    expect(page.get_by_role("main")).to_contain_text("Your signature is counted.")


def test_without_javascript_no_copy_button_promises_what_it_cannot_do(
    open_page: OpenPage, server: Server, mailbox: Mailbox
):
    page = open_page(java_script_enabled=False)
    confirm_in_browser(page, server, mailbox)
    expect(page.get_by_role("button", name="Copy the receipt")).to_be_hidden()
    expect(page.get_by_role("button", name="Copy the address")).to_be_hidden()
    expect(page.get_by_role("button", name="Share…")).to_be_hidden()
