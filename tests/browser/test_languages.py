"""A browser set to Spanish reads the interface in Spanish, live count included, and the
footer's links switch languages without JavaScript."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.browser.conftest import OpenPage
from tests.browser.helpers import assert_accessible, sign_and_confirm_elsewhere
from tests.conftest import Mailbox
from tests.live import Server


def test_a_spanish_browser_reads_the_letter_in_spanish(
    open_page: OpenPage, server: Server, mailbox: Mailbox
):
    page = open_page(locale="es-ES")  # Chromium then sends Accept-Language: es-ES
    with page.expect_response(lambda response: response.url.endswith("/events")):
        page.goto("/letters/test-letter")
    expect(page.locator("html")).to_have_attribute("lang", "es")
    expect(page.get_by_role("heading", name="Firmar esta carta")).to_be_visible()
    expect(page.get_by_label("Dirección de correo del trabajo", exact=True)).to_be_visible()
    count = page.locator("[data-live-count]")
    expect(count).to_have_text("0 firmas verificadas")
    expect(page.get_by_role("heading", name="Test letter")).to_be_visible()  # as written
    assert_accessible(page)

    sign_and_confirm_elsewhere(server, mailbox, "ana@microsoft.com")
    expect(count).to_have_text("1 firma verificada")  # live.js speaks Spanish too

    languages = page.get_by_role("navigation", name="Idioma")
    expect(languages.get_by_role("link", name="Español")).to_have_attribute("aria-current", "true")
    expect(languages.get_by_role("link", name="English")).to_have_attribute("lang", "en")
    languages.get_by_role("link", name="English").click()
    expect(page).to_have_url(server.url + "/en/letters/test-letter")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.get_by_role("heading", name="Sign this letter")).to_be_visible()
    expect(page.locator("[data-live-count]")).to_have_text("1 verified signature")
