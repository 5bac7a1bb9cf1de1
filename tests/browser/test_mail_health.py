"""The admins' mail health in a real browser, with failures to show: axe-core, and a phone."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import Browser
from sqlmodel import Session

from letters.models import MailTally, utcnow
from tests.authors.helpers import make_author, session_cookie
from tests.browser.conftest import PHONE
from tests.browser.helpers import assert_accessible, horizontal_overflow
from tests.live import Server


def test_mail_health_with_failures_is_accessible_and_fits_a_phone(
    browser: Browser, server: Server, engine: Any
):
    now = utcnow()
    hour = now.replace(minute=0, second=0, microsecond=0)
    with Session(engine) as session:
        for outcome, code, status, count in [
            ("sent", 0, "", 1200),
            ("failed", 451, "4.7.1", 31),
            ("failed", 0, "", 3),
            ("dropped", 550, "5.7.1", 2),
        ]:
            session.add(
                MailTally(
                    hour=hour,
                    channel="site",
                    outcome=outcome,
                    reply_code=code,
                    status=status,
                    count=count,
                    last_at=now,
                )
            )
        session.commit()
    author = make_author(engine, "ada@example.org", admin=True)
    context = browser.new_context(base_url=server.url, viewport=PHONE)
    context.add_cookies(
        [{"name": "letters_author", "value": session_cookie(engine, author), "url": server.url}]
    )
    page = context.new_page()
    page.goto("/authors/admin")
    failures = page.get_by_role("table", name="Last failures")
    assert "451 4.7.1" in failures.inner_text()
    assert "no answer (server unreachable)" in failures.inner_text()
    assert horizontal_overflow(page) == 0
    assert_accessible(page)
    context.close()
