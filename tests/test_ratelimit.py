"""Abuse limits: tight per address, generous per IP and per domain, shared via the database."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import select

from letters.app import create_app
from letters.ratelimit import ip_prefix
from tests.helpers import counts, pending_count, sign_api


@pytest.fixture
def limited_client(settings):
    from starlette.testclient import TestClient

    settings.limit_per_address = 3
    settings.limit_per_ip = 6
    settings.limit_per_domain = 8
    with TestClient(create_app(settings)) as client:
        yield client


def test_an_address_gets_a_few_links_then_429(limited_client, letter, mailbox, db):
    for _ in range(3):
        assert sign_api(limited_client, "flood@microsoft.com").status_code == 202
    # The +tag and case do not get around the limit: it is per person.
    response = sign_api(limited_client, "Flood+again@microsoft.com")
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "rate_limited"
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= 3600
    mailbox.wait_for(3)
    assert len(mailbox.messages) == 3
    assert pending_count(db) == 3
    # Other people are not slowed down.
    assert sign_api(limited_client, "other@microsoft.com").status_code == 202


def signs_from(settings, host, email):
    """One sign request from a given client IP, as a separate worker would serve it."""
    from starlette.testclient import TestClient

    with TestClient(create_app(settings), client=(host, 1234)) as client:
        return sign_api(client, email).status_code


def test_per_ip_limit(settings, letter, mailbox):
    settings.limit_per_ip = 3
    statuses = [signs_from(settings, "198.51.100.1", f"p{n}@microsoft.com") for n in range(4)]
    assert statuses == [202, 202, 202, 429]
    # Another address on another network is not slowed down.
    assert signs_from(settings, "198.51.100.2", "q@microsoft.com") == 202
    assert signs_from(settings, "2001:db8::1", "r@microsoft.com") == 202


def test_one_ip_limit_counts_sign_and_manage_requests_together(settings, letter, mailbox):
    """An office's IP has one limit, whatever it asks: sign requests (counted in the sign
    statement on PostgreSQL) and manage-link requests (counted on their own) add to the
    same count, and the sixth request of either kind is refused."""
    from starlette.testclient import TestClient

    from tests.helpers import letter_csrf

    settings.limit_per_ip = 5
    host = "198.51.100.9"
    statuses = [signs_from(settings, host, f"office{n}@microsoft.com") for n in range(3)]
    with TestClient(create_app(settings), client=(host, 1234)) as client:
        for expected in (303, 303, 429):
            data = {"csrftoken": letter_csrf(client), "email": "office0@microsoft.com"}
            response = client.post("/letters/test-letter/manage", data=data, follow_redirects=False)
            statuses.append(response.status_code)
            assert response.status_code == expected, statuses
    assert statuses == [202, 202, 202, 303, 303, 429]
    assert signs_from(settings, host, "office9@microsoft.com") == 429


def test_the_domain_count_is_never_a_cap_but_marks_a_flood(settings, letter, mailbox):
    # Each request from a fresh app, as separate workers would serve them: past the
    # domain's count, only the flood limit per IP address applies (letters.record.floods).
    settings.limit_per_domain = 4
    statuses = [signs_from(settings, f"10.0.0.{n}", f"d{n}@github.com") for n in range(8)]
    assert statuses == [202] * 8
    assert signs_from(settings, "10.0.1.1", "fine@microsoft.com") == 202


def test_the_html_form_is_limited_too(limited_client, letter, mailbox, db):
    from tests.helpers import letter_csrf

    token = letter_csrf(limited_client)
    for expected in [303, 303, 303, 429]:
        response = limited_client.post(
            "/letters/test-letter/sign",
            data={"csrftoken": token, "email": "html@microsoft.com"},
            follow_redirects=False,
        )
        assert response.status_code == expected
    assert "retry-after" in response.headers
    assert counts(db)["verified"] == 0


def test_limits_are_kept_in_the_database_not_in_memory(settings, letter, mailbox):
    from starlette.testclient import TestClient

    settings.limit_per_address = 2
    with TestClient(create_app(settings)) as first:
        assert sign_api(first, "shared@microsoft.com").status_code == 202
        assert sign_api(first, "shared@microsoft.com").status_code == 202
    # A second app instance (as another worker process would be) sees the same counts.
    with TestClient(create_app(settings)) as second:
        assert sign_api(second, "shared@microsoft.com").status_code == 429


def test_rate_limit_rows_hold_no_raw_address_or_ip(client, letter, mailbox, engine):
    from sqlalchemy import text

    sign_api(client, "raw@microsoft.com")
    with engine.connect() as connection:
        keys = [row[0] for row in connection.execute(text("SELECT key FROM rate_limit_hit"))]
    assert len(keys) == 3
    for key in keys:
        assert "raw" not in key and "microsoft" not in key and "testclient" not in key


def test_rate_limit_rows_expire_with_their_window_not_with_the_link(
    client, letter, mailbox, db, settings
):
    from letters.models import PendingSignature, RateLimitHit, utcnow

    sign_api(client, "window@microsoft.com")
    db.rollback()
    window_end = utcnow() + timedelta(seconds=settings.limit_window + 5)
    assert all(row.expires_at <= window_end for row in db.exec(select(RateLimitHit)).all())
    pending = db.exec(select(PendingSignature)).one()
    assert pending.expires_at > window_end  # the link lives longer (LINK_MAX_AGE)


def test_ip_prefix():
    assert ip_prefix("203.0.113.7") == "203.0.113.7"
    assert ip_prefix("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"
    assert ip_prefix("::ffff:203.0.113.7") == "203.0.113.7"
    assert ip_prefix(None) == "unknown"
    assert ip_prefix("testclient") == "unknown"
