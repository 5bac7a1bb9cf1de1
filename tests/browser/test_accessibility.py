"""Accessibility: axe-core on every public page, labels, errors, live regions, keyboard use."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.browser.conftest import PHONE, OpenPage
from tests.browser.helpers import (
    assert_accessible,
    is_focused,
    link_in_email,
    outline,
    sign_and_confirm_elsewhere,
    sign_form,
    tab_to,
)
from tests.conftest import Mailbox
from tests.helpers import sign_api
from tests.live import Server, http_client

PENDING = "pending.signer@github.com"
PAGES = {
    "index": "/",
    "letter": "/letters/test-letter",
    "signatures": "/letters/test-letter/signatures",
    "tally": "/letters/test-letter/tally",
    "widget": "/letters/test-letter/widget",
    "check email": "/letters/test-letter/check-email",
    "link problem": "/verify/not-a-real-token",
    "not found": "/letters/no-such-letter",
}


def submit_sign_form(page: Page, email: str) -> None:
    form = sign_form(page)
    form.get_by_label("Work email address", exact=True).fill(email)
    form.get_by_role("button", name="Sign and send my link").click()


def test_every_public_page_passes_axe(open_page: OpenPage, server: Server, mailbox: Mailbox):
    grace = {"name": "Grace Hopper", "title": "Engineer", "show_name": True}
    sign_and_confirm_elsewhere(server, mailbox, "grace@microsoft.com", **grace)
    with http_client(server.url) as client:
        assert sign_api(client, PENDING).status_code == 202
    link = link_in_email(server, mailbox, PENDING)

    for viewport in (None, PHONE):
        page = open_page(viewport=viewport) if viewport else open_page()
        for name, path in PAGES.items():
            response = page.goto(path)
            assert response is not None
            assert response.status == {"link problem": 400, "not found": 404}.get(name, 200), name
            assert_accessible(page)

        page.goto("/letters/test-letter")
        submit_sign_form(page, "someone@gmail.com")  # the letter page showing a form error
        expect(page.get_by_role("alert")).to_be_visible()
        assert_accessible(page)

    page.goto(link)  # the confirm page
    expect(page.get_by_role("heading", level=1)).to_have_text("Confirm your signature")
    assert_accessible(page)
    page.get_by_role("button", name="Confirm my signature").click()  # the confirmed page
    expect(page.get_by_role("heading", level=1)).to_contain_text("your signature is verified")
    assert_accessible(page)


def test_every_form_field_has_a_label(page: Page):
    page.goto("/letters/test-letter")
    form = sign_form(page)
    fields = form.locator("input:not([type=hidden]), select, textarea, button")
    assert fields.count() >= 6  # email, name, title, two choices, the button, and any more
    for field in fields.all():
        expect(field).to_have_accessible_name(re.compile(r"\w"))
    for label in ["Work email address", "Your name", "Job title or team", "Yes, show my name"]:
        expect(form.get_by_label(label)).to_be_visible()
    expect(form.get_by_role("group", name="Show my name publicly?")).to_be_visible()


def test_a_field_error_is_announced_and_tied_to_its_field(open_page: OpenPage):
    page = open_page(java_script_enabled=False)  # the page as the server sends it
    page.goto("/letters/test-letter")
    with page.expect_response(lambda response: response.request.method == "POST") as answer:
        submit_sign_form(page, "someone@gmail.com")
    assert answer.value.status == 422

    assert page.title().startswith("Error: ")  # read first when the page loads
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Please check the form")
    message = alert.get_by_role("link").inner_text()
    assert message, "the error summary names the problem"
    expect(alert.get_by_role("link")).to_have_attribute("href", "#email")

    form = sign_form(page)
    email = form.get_by_label("Work email address", exact=True)
    expect(email).to_have_value("someone@gmail.com")  # nothing typed is lost
    expect(email).to_have_attribute("aria-invalid", "true")
    expect(email).to_have_attribute("aria-describedby", re.compile(r"\bemail-error\b"))
    expect(email).to_have_accessible_description(re.compile(re.escape(message)))
    expect(page.locator("#email-error")).to_have_text(message)

    form.get_by_label("Yes, show my name").check()  # shown, but no name: the name's error
    submit_sign_form(page, "ada@microsoft.com")
    name = form.get_by_label("Your name")
    expect(name).to_have_attribute("aria-invalid", "true")
    expect(name).to_have_accessible_description("Enter your name, or choose to keep it hidden.")
    expect(email).not_to_have_attribute("aria-invalid", "true")


def test_counts_are_in_live_regions(open_page: OpenPage):
    page = open_page(java_script_enabled=False)
    for path in [
        "/letters/test-letter",
        "/letters/test-letter/tally",
        "/letters/test-letter/widget",
    ]:
        page.goto(path)
        region = page.locator("[aria-live]")
        expect(region).to_have_count(1)
        expect(region).to_have_attribute("aria-live", "polite")
        expect(region.locator("strong")).to_have_text("0")


def test_signing_with_the_keyboard_alone(page: Page, server: Server, mailbox: Mailbox):
    page.goto("/letters/test-letter")
    skip = page.get_by_role("link", name="Skip to content")
    assert tab_to(page, skip) == 1, "the skip link comes first"
    expect(skip).to_be_in_viewport()

    form = sign_form(page)
    email = form.get_by_label("Work email address", exact=True)
    tab_to(page, email)
    assert outline(email)[0] != "none", "the focused field shows it"
    page.keyboard.type("ada.keyboard@microsoft.com")
    page.keyboard.press("Tab")
    assert is_focused(form.get_by_label("Your name"))
    page.keyboard.type("Ada Keys")
    page.keyboard.press("Tab")
    page.keyboard.type("Research")
    page.keyboard.press("Tab")  # into the radio group, on the checked "hidden" choice
    assert is_focused(form.get_by_label("No, keep it hidden"))
    page.keyboard.press("ArrowDown")
    expect(form.get_by_label("Yes, show my name")).to_be_checked()

    button = form.get_by_role("button", name="Sign and send my link")
    unfocused = outline(button)
    tab_to(page, button)
    style, width = outline(button)
    assert style != "none" and width >= 2, "the focused button shows a focus ring"
    assert (style, width) != unfocused
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your work email")

    page.goto(link_in_email(server, mailbox, "ada.keyboard@microsoft.com"))
    confirm = page.get_by_role("button", name="Confirm my signature")
    tab_to(page, confirm)
    assert outline(confirm)[0] != "none"
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_contain_text("your signature is verified")

    back = page.get_by_role("link", name="Test letter")
    tab_to(page, back)
    page.keyboard.press("Enter")
    expect(page.locator("[data-live-count] strong")).to_have_text("1")
    expect(page.locator(".signers")).to_contain_text("Ada Keys, Research")
