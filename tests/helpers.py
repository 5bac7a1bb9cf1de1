"""Small helpers the tests share: sign, confirm, read counts, read CSRF tokens."""

from __future__ import annotations

import re
from typing import Any

from sqlmodel import Session, func, select
from starlette.testclient import TestClient

from letters.models import (
    GENESIS,
    LedgerEntry,
    Letter,
    OrganizationCount,
    PendingSignature,
    Signature,
)
from letters.record import ledger

CSRF_FIELD = re.compile(r'name="csrftoken" value="([^"]+)"')


def sign_api(
    client: TestClient,
    email: str,
    name: str = "",
    show_name: bool = False,
    title: str = "",
    slug: str = "test-letter",
    **headers: str,
) -> Any:
    return client.post(
        f"/api/letters/{slug}/signatures",
        json={"name": name, "email": email, "title": title, "show_name": show_name},
        headers=headers or None,
    )


def confirm_api(client: TestClient, token: str) -> Any:
    return client.post("/api/verify", json={"token": token})


def csrf_from(html: str) -> str:
    match = CSRF_FIELD.search(html)
    assert match, "no CSRF field in the page"
    return match.group(1)


def letter_csrf(client: TestClient, slug: str = "test-letter") -> str:
    """A CSRF token for the letter page's forms, got as a browser that does not send
    Sec-Fetch-Site gets one: its first post is refused with the form again, with a token."""
    page = client.post(f"/letters/{slug}/sign", data={})
    assert page.status_code == 403, page.status_code
    return csrf_from(page.text)


def counts(db: Session, slug: str = "test-letter") -> dict[str, Any]:
    """The counters, the organization counts and the rows they must agree with."""
    db.rollback()  # end the read snapshot so the next query sees the latest commits
    letter = db.exec(select(Letter).where(Letter.slug == slug)).one()
    orgs = db.exec(select(OrganizationCount).where(OrganizationCount.letter_id == letter.id)).all()
    rows = db.exec(
        select(func.count()).select_from(Signature).where(Signature.letter_id == letter.id)
    ).one()
    named_rows = db.exec(
        select(func.count())
        .select_from(Signature)
        .where(Signature.letter_id == letter.id, Signature.show_name == True)  # noqa: E712
    ).one()
    return {
        "verified": letter.verified_count,
        "named": letter.named_count,
        "hidden": letter.hidden_count,
        "orgs": {org.organization: org.count for org in orgs if org.count},
        "rows": rows,
        "named_rows": named_rows,
    }


def assert_consistent(db: Session, slug: str = "test-letter") -> dict[str, Any]:
    """verified == named + hidden == sum of organizations == rows == the ledger's recount."""
    c = counts(db, slug)
    assert c["verified"] == c["named"] + c["hidden"] == sum(c["orgs"].values()) == c["rows"]
    assert c["named"] == c["named_rows"]
    recount = ledger_recount(db, slug)
    assert (recount.verified, recount.named, recount.hidden) == (
        c["verified"],
        c["named"],
        c["hidden"],
    )
    assert dict(recount.organizations) == c["orgs"]
    return c


def ledger_recount(db: Session, slug: str = "test-letter") -> ledger.Recount:
    """Verify the letter's ledger as stored and recount it; also checks the letter's head."""
    db.rollback()
    letter = db.exec(select(Letter).where(Letter.slug == slug)).one()
    entries = db.exec(
        select(LedgerEntry).where(LedgerEntry.letter_id == letter.id).order_by(LedgerEntry.seq)
    ).all()
    recount = ledger.verify(ledger.public_entry(entry) for entry in entries)
    assert (recount.length, recount.head) == (letter.ledger_length, letter.ledger_head)
    # The head the last entry chains on, kept by the statement that appended it.
    assert letter.ledger_prev == (entries[-1].prev_hash if entries else GENESIS)
    return recount


def pending_count(db: Session) -> int:
    db.rollback()  # end the read snapshot so the next query sees the latest commits
    return db.exec(select(func.count()).select_from(PendingSignature)).one()


def names_of(row: Signature | PendingSignature) -> tuple[str, str]:
    """A signature's (or pending signature's) name and title, opened if sealed, as the app
    opens them with the tests' SECRET_KEY."""
    from letters.record import names
    from letters.sealing import keyring
    from tests.conftest import SECRET

    if isinstance(row, PendingSignature):
        return names.of_pending(keyring(SECRET), row)
    return names.of_signature(keyring(SECRET), row)
