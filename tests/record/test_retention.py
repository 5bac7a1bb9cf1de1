"""Retention: expired links and rate-limit rows go; names go when the authors chose so."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlmodel import select

from letters.cli import main
from letters.db import make_async_engine, make_sessionmaker, writer
from letters.models import (
    LedgerEntry,
    Letter,
    ManageLink,
    PendingSignature,
    RateLimitHit,
    Signature,
    utcnow,
)
from letters.record.retention import Purged, purge_expired
from tests.conftest import SECRET
from tests.helpers import assert_consistent, confirm_api, counts, names_of, sign_api
from tests.record.test_signer_control import link_for, signed


def purge(settings, now=None) -> Purged:
    async def run() -> Purged:
        engine = make_async_engine(settings)
        try:
            return await purge_expired(make_sessionmaker(writer(engine)), now)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def rows(db, model) -> list:
    db.rollback()
    return list(db.exec(select(model)).all())


def test_expired_links_and_rate_limit_rows_go_and_the_rest_stays(
    settings, client, letter, mailbox, db
):
    signed(client, mailbox, "ada@microsoft.com")
    link_for(client, mailbox, "ada@microsoft.com")
    assert sign_api(client, "bob@microsoft.com").status_code == 202
    assert len(rows(db, PendingSignature)) == 2
    assert len(rows(db, ManageLink)) == 1
    assert rows(db, RateLimitHit)

    nothing = purge(settings)
    assert (nothing.pending_signatures, nothing.manage_links, nothing.rate_limit_rows) == (0, 0, 0)

    later = utcnow() + timedelta(days=2)
    purged = purge(settings, later)
    assert purged.pending_signatures == 2
    assert purged.manage_links == 1
    # Sign links for two addresses, a manage link for one, one IP, one domain.
    assert purged.rate_limit_rows == 5
    assert rows(db, PendingSignature) == rows(db, ManageLink) == rows(db, RateLimitHit) == []
    assert counts(db)["verified"] == 1  # verified signatures are never "expired"


def test_rate_limit_keys_hold_no_address_ip_or_domain(client, letter, mailbox, db):
    sign_api(client, "Ada.Lovelace@microsoft.com")
    keys = [row.key for row in rows(db, RateLimitHit)]
    assert len(keys) == 3
    for key in keys:
        kind, _, digest = key.partition(":")
        assert kind in ("sign", "ip", "dom")
        if kind == "sign":  # per letter: its id, then the address's digest
            _, _, digest = digest.partition(":")
        assert len(digest) == 40 and all(c in "0123456789abcdef" for c in digest)
        for plain in ("ada", "lovelace", "microsoft", "testclient", "127.0.0"):
            assert plain not in key.lower()


def close(db, days_ago: float, erase_after: int | None) -> None:
    db.rollback()
    letter = db.exec(select(Letter)).one()
    letter.status = "closed"
    letter.closed_at = utcnow() - timedelta(days=days_ago)
    letter.erase_names_after_days = erase_after
    db.add(letter)
    db.commit()


@pytest.fixture
def signers(client, letter, mailbox):
    signed(
        client, mailbox, "ada@microsoft.com", name="Ada Lovelace", title="Engineer", show_name=True
    )
    signed(client, mailbox, "zed@microsoft.com", name="Zed Hiddenname", title="Secret Team")
    before = len(mailbox.messages)
    assert sign_api(client, "bo@github.com", name="Bo Waiting").status_code == 202
    mailbox.wait_for(before + 1)
    return client


def test_names_are_not_erased_before_their_time_or_unless_chosen(settings, signers, db):
    for days_ago, erase_after in [(29.9, 30), (400, None)]:
        close(db, days_ago, erase_after)
        assert purge(settings).letters_erased == 0
        assert {names_of(s)[0] for s in rows(db, Signature)} == {"Ada Lovelace", "Zed Hiddenname"}
    db.rollback()
    letter = db.exec(select(Letter)).one()
    letter.status, letter.erase_names_after_days = "published", 0
    db.add(letter)
    db.commit()
    assert purge(settings).letters_erased == 0  # only closed letters


def test_names_are_erased_when_due_and_the_counts_stay(settings, signers, db):
    client = signers
    before = assert_consistent(db)
    close(db, 31, 30)
    purged = purge(settings)
    assert (purged.letters_erased, purged.names_erased, purged.ledger_names_erased) == (1, 2, 1)
    assert purge(settings).letters_erased == 0  # once

    assert assert_consistent(db) == before  # counts exact; the ledger still verifies
    assert [(*names_of(s), s.reveal_at) for s in rows(db, Signature)] == [("", "", None)] * 2
    assert all(s.sealed_name == "" for s in rows(db, Signature))
    assert all(e.name == e.title == e.name_salt == "" for e in rows(db, LedgerEntry))
    assert rows(db, PendingSignature) == []  # pending signatures hold names as typed
    letter = rows(db, Letter)[0]
    assert letter.names_erased_at is not None

    page = client.get("/letters/test-letter").text
    assert "The names of the people who signed were erased on" in page
    assert "1 of them had\n    chosen to show their name" in page
    assert client.get("/api/letters/test-letter/signatures").json()["signatures"] == []
    csv = client.get("/api/letters/test-letter/signatures.csv").text
    assert csv.strip() == "name,title,organization,signed_at"
    detail = client.get("/api/letters/test-letter").json()
    assert (detail["verified_count"], detail["named_count"]) == (2, 1)
    for path in ("/letters/test-letter", "/letters/test-letter/signatures"):
        text = client.get(path).text
        for secret in ("Ada Lovelace", "Engineer", "Zed Hiddenname", "Secret Team", "Bo Waiting"):
            assert secret not in text


def test_an_erased_letter_still_lets_signers_withdraw(settings, signers, mailbox, db):
    client = signers
    close(db, 31, 30)
    purge(settings)
    token_page = "/letters/test-letter/manage"
    from tests.helpers import csrf_from

    page = client.get(token_page)
    data = {"csrftoken": csrf_from(page.text), "email": "ada@microsoft.com"}
    before = len(mailbox.messages)
    assert client.post(token_page, data=data, follow_redirects=False).status_code == 303
    mailbox.wait_for(before + 1)
    from tests.record.test_signer_control import act, manage_token

    assert act(client, manage_token(mailbox, "ada@microsoft.com"), "withdraw").status_code == 200
    c = assert_consistent(db)
    assert (c["verified"], c["named"], c["hidden"]) == (1, 0, 1)


def test_purge_command_prints_what_it_removed(
    monkeypatch, database_url, tmp_path, capsys, client, letter, mailbox, db
):
    signed(client, mailbox, "ada@microsoft.com", name="Ada Lovelace", show_name=True)
    link_for(client, mailbox, "ada@microsoft.com")
    db.rollback()
    for row in rows(db, PendingSignature) + rows(db, ManageLink) + rows(db, RateLimitHit):
        row.expires_at = utcnow() - timedelta(minutes=1)
        db.add(row)
    db.commit()
    close(db, 10, 7)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("SECRET_KEY", SECRET)
    monkeypatch.setenv("ENVIRONMENT", "test")
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    main(["purge"])
    out = capsys.readouterr().out
    assert "Deleted 1 expired pending signatures." in out
    assert "Deleted 1 expired manage links." in out
    assert "Deleted 4 expired rate-limit rows." in out  # sign, manage, IP, domain
    assert "Erased the names of 1 letters (1 signatures, 1 ledger entries)." in out
    for secret in ("Ada", "ada@", SECRET):
        assert secret not in out
    main(["purge"])
    assert "Erased the names of 0 letters" in capsys.readouterr().out


def test_a_confirmation_after_closing_cannot_bring_names_back(settings, signers, mailbox, db):
    client = signers
    close(db, 31, 30)
    purge(settings)
    response = confirm_api(client, mailbox.last_token("bo@github.com"))
    assert response.status_code == 400  # its pending signature went with the names
    assert counts(db)["verified"] == 2
