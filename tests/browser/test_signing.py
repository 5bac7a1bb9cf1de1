"""A signer signs in a real browser, with and without JavaScript, through a real SMTP server."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import OpenPage
from tests.browser.helpers import link_in_email, sign_form
from tests.conftest import Mailbox
from tests.live import Server

EMAIL = "ada.lovelace@microsoft.com"


@pytest.mark.parametrize("javascript", [True, False], ids=["javascript", "no-javascript"])
def test_sign_confirm_and_see_the_count_change(
    open_page: OpenPage, server: Server, mailbox: Mailbox, javascript: bool
):
    page = open_page(java_script_enabled=javascript)
    page.goto("/letters/test-letter")
    expect(page.get_by_role("heading", level=1)).to_have_text("Test letter")
    expect(page.locator("[data-live-count]")).to_have_text("0 verified signatures")
    expect(page.get_by_text("No verified signatures yet.")).to_be_visible()

    form = sign_form(page)
    form.get_by_label("Work email address", exact=True).fill(EMAIL)
    form.get_by_label("Your name").fill("Ada Lovelace")
    form.get_by_label("Job title or team").fill("Analyst")
    form.get_by_label("Yes, show my name").check()
    form.get_by_role("button", name="Sign and send my link").click()

    expect(page).to_have_url(f"{server.url}/letters/test-letter/check-email")
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your work email")

    mailbox.wait_for(1, timeout=10)
    assert mailbox.messages[0]["Subject"] == "Confirm your email address"
    page.goto(link_in_email(server, mailbox, EMAIL))
    expect(page.get_by_role("heading", level=1)).to_have_text("Confirm your signature")
    expect(page.locator("dl.summary dd")).to_contain_text("Ada Lovelace, Analyst · Microsoft")

    page.get_by_role("button", name="Confirm my signature").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "Thank you, your signature is verified"
    )
    expect(page.get_by_role("main")).to_contain_text("now has 1 verified signature.")

    page.get_by_role("link", name="Test letter").click()
    expect(page).to_have_url(f"{server.url}/en/letters/test-letter")
    expect(page.locator("[data-live-count]")).to_have_text("1 verified signature")
    expect(page.locator(".signers")).to_contain_text("Ada Lovelace, Analyst")
    expect(page.locator("table.orgs")).to_contain_text("Microsoft")

    page.goto(link_in_email(server, mailbox, EMAIL))  # a link works once: here, it is counted
    expect(page.get_by_role("heading", level=1)).to_have_text("Your signature is counted")
    elsewhere = open_page(java_script_enabled=javascript)  # anyone else learns no more
    elsewhere.goto(link_in_email(server, mailbox, EMAIL))
    expect(elsewhere.get_by_role("heading", level=1)).to_have_text("This link cannot be used")
