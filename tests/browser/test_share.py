"""Spreading a letter: its QR code and flyer, decoded by a real QR reader (zbarimg, from
Debian's zbar-tools, which .ci/run installs), the flyer printed to one page, and the
delivery and history pages checked with axe."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session

from letters.db import writer
from letters.models import Letter, LetterAuthor, utcnow
from tests.authors.helpers import make_author, session_cookie
from tests.browser.conftest import OpenPage
from tests.browser.helpers import assert_accessible, sign_and_confirm_elsewhere
from tests.conftest import Mailbox
from tests.live import Server

LETTER = "/letters/test-letter"


def decode(png: Path) -> list[str]:
    """What zbarimg reads in an image: one line per code."""
    zbarimg = shutil.which("zbarimg")
    if zbarimg is None:
        pytest.skip("decoding QR codes needs zbarimg: apt-get install zbar-tools")
    result = subprocess.run(
        [zbarimg, "--quiet", "--raw", str(png)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"no code found: {result.stderr}"
    return result.stdout.splitlines()


def test_the_qr_code_decodes_to_the_letters_address(open_page: OpenPage, server: Server, tmp_path):
    page = open_page()
    response = page.goto(f"{LETTER}/qr.svg")
    assert response is not None and response.status == 200
    shot = tmp_path / "qr.png"
    page.locator("svg").screenshot(path=str(shot))
    assert decode(shot) == [f"{server.url}{LETTER}"]


def test_the_flyer_carries_the_address_and_a_code_that_decodes_to_it(
    open_page: OpenPage, server: Server, mailbox: Mailbox, tmp_path
):
    sign_and_confirm_elsewhere(server, mailbox, "grace@microsoft.com")
    page = open_page()
    page.goto(f"{LETTER}/flyer")
    assert_accessible(page)
    url = f"{server.url}{LETTER}"
    assert page.locator(".flyer .url").inner_text() == url
    assert "1 verified signature on" in page.locator(".flyer .count").inner_text()
    # Printed: the code, as a printer renders it, still decodes; one page on A4 and on Letter.
    page.emulate_media(media="print")
    shot = tmp_path / "flyer.png"
    page.screenshot(path=str(shot), full_page=True)
    assert decode(shot) == [url]
    assert not page.locator("footer.site").is_visible()
    for paper in ("A4", "Letter"):
        pdf = page.pdf(format=paper, print_background=True)
        assert len(re.findall(rb"/Type\s*/Page[^s]", pdf)) == 1, paper


def test_the_delivery_history_and_letter_pages_pass_axe(
    open_page: OpenPage, server: Server, engine: Any, letter: Letter
):
    author = make_author(engine, "ada@example.org")
    with Session(writer(engine)) as session:
        session.add(LetterAuthor(letter_id=letter.id, author_id=author.id, role="owner"))
        session.commit()
    page = open_page()
    page.context.add_cookies(
        [{"name": "letters_author", "value": session_cookie(engine, author), "url": server.url}]
    )
    page.goto("/authors/letters/test-letter/delivery")
    assert_accessible(page)
    page.get_by_label("To whom").fill("The board")
    page.get_by_label("It was delivered in person or by other means").check()
    page.get_by_label("Delivered on").fill(utcnow().date().isoformat())
    page.get_by_role("button", name="Record the delivery").click()
    assert page.get_by_role("status").is_visible()
    assert_accessible(page)
    page.get_by_label("The recipient's reply").check()
    page.get_by_label("Text").fill("We will think about it.")
    page.get_by_role("button", name="Publish", exact=True).click()
    assert_accessible(page)
    page.get_by_label("Text").fill("")  # an error shown on the form
    page.get_by_role("button", name="Publish", exact=True).click()
    assert page.get_by_role("alert").is_visible()
    assert_accessible(page)
    for path in (LETTER, f"{LETTER}/history", f"{LETTER}/tally"):
        page.goto(path)
        assert "Delivered to The board" in page.content()
        assert_accessible(page)
