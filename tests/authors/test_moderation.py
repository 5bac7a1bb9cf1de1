"""Moderation: hiding a troll's name, invalidating spam, and what authors can never see."""

from __future__ import annotations

import asyncio

import pytest
from sqlmodel import col, select

from letters.authors import moderation
from letters.authors.access import Act
from letters.models import AuditEntry, BlockedSigner, LedgerEntry, PendingSignature, Signature
from letters.sealing import keyring
from tests.authors.helpers import create_draft, post_form, publish, sign, sign_in_as
from tests.conftest import SECRET
from tests.helpers import (
    assert_consistent,
    confirm_api,
    counts,
    csrf_from,
    letter_csrf,
    names_of,
    sign_api,
)

SLUG = "drop-the-contract"
LIST = f"/authors/letters/{SLUG}/signatures"


@pytest.fixture
def signed(client, engine, mailbox, db):
    """A published letter: a troll shown by name, an honest named signer, two hidden ones."""
    author = sign_in_as(client, engine, "ada@example.org")
    create_draft(client)
    publish(client, SLUG)
    sign(
        client, mailbox, "troll@microsoft.com", SLUG, name="Bill Gates", title="CEO", show_name=True
    )
    sign(client, mailbox, "grace@github.com", SLUG, name="Grace Hopper", show_name=True)
    # A hidden signer's name is stored (they may show it later) but nobody may see it.
    sign(client, mailbox, "secret@github.com", SLUG, name="Secret Person", title="Spy")
    sign(client, mailbox, "quiet@corp.example", SLUG)
    db.rollback()
    ids = {names_of(s)[0] or s.organization: s.id for s in db.exec(select(Signature)).all()}
    return {"author": author, "troll": ids["Bill Gates"], "hidden": ids["Secret Person"]}


def hide(client, signature_id):
    return post_form(client, f"{LIST}/{signature_id}/hide", page=LIST)


def invalidate(client, signature_id, **fields):
    page = f"{LIST}/{signature_id}/invalidate"
    return post_form(client, page, fields, page=page)


def test_authors_see_public_names_and_hidden_ones_only_as_organization_and_date(client, signed, db):
    page = client.get(LIST).text
    assert "Bill Gates" in page and "CEO" in page and "Grace Hopper" in page
    assert page.count(">hidden<") == 2
    assert "Secret Person" not in page and "Spy" not in page
    assert "@" not in page.split("Signed in as")[1].split("</nav>")[1]  # no address anywhere
    rows, _ = client.portal.call(_rows, client.app)
    assert sorted(moderation_lines(rows)) == [
        "Bill Gates, Microsoft",
        "Grace Hopper, GitHub",
        "hidden, Example Corp",
        "hidden, GitHub",
    ]
    details = client.get(f"{LIST}/{signed['hidden']}/invalidate").text
    assert "Secret Person" not in details and "hidden" in details


async def _rows(app):
    from letters.models import Letter

    async with app.state.sessionmaker() as session:
        letter = (await session.exec(select(Letter).where(Letter.slug == SLUG))).one()
        return await moderation.signatures(session, letter)


def moderation_lines(rows):
    return [f"{r.name}, {r.organization}" if r.named else f"hidden, {r.organization}" for r in rows]


def test_hiding_a_name_keeps_the_signature_counting_as_hidden(client, signed, db):
    before = assert_consistent(db, SLUG)
    response = hide(client, signed["troll"])
    assert response.status_code == 303
    after = assert_consistent(db, SLUG)
    assert after["verified"] == before["verified"] == 4
    assert (after["named"], after["hidden"]) == (before["named"] - 1, before["hidden"] + 1)
    assert after["orgs"] == before["orgs"]
    assert "Bill Gates" not in client.get(f"/letters/{SLUG}").text
    assert "Bill Gates" not in client.get(f"/api/letters/{SLUG}/signatures").text
    db.rollback()
    troll = db.get(Signature, signed["troll"])
    assert (troll.show_name, troll.name, troll.title) == (False, "", "")
    entries = db.exec(
        select(LedgerEntry)
        .where(LedgerEntry.commitment == troll.commitment)
        .order_by(col(LedgerEntry.seq))
    ).all()
    assert [e.kind for e in entries] == ["signed", "changed"]
    assert all(e.name == "" and e.name_salt == "" for e in entries)  # blanked in the ledger
    assert "Bill Gates" not in client.get(f"/api/letters/{SLUG}/ledger").text
    audit = db.exec(select(AuditEntry).where(AuditEntry.action == "hid_name")).one()
    assert (audit.organization, audit.commitment) == ("Microsoft", troll.commitment)
    assert "Bill" not in audit.detail and "@" not in audit.detail
    # Doing it again changes nothing.
    again = hide(client, signed["troll"])
    assert again.status_code == 409
    assert hide(client, signed["hidden"]).status_code == 409
    assert assert_consistent(db, SLUG) == after


def test_invalidating_removes_the_signature_from_every_count(client, signed, db):
    before = assert_consistent(db, SLUG)
    response = invalidate(client, signed["troll"], reason="spam", details="Not the real one")
    assert response.status_code == 303
    after = assert_consistent(db, SLUG)
    assert (after["verified"], after["named"], after["hidden"]) == (3, 1, 2)
    assert after["orgs"] == {**before["orgs"], "Microsoft": before["orgs"]["Microsoft"] - 1} or (
        "Microsoft" not in after["orgs"]
    )
    db.rollback()
    assert db.get(Signature, signed["troll"]) is None
    last = db.exec(select(LedgerEntry).order_by(LedgerEntry.seq.desc())).first()
    assert (last.kind, last.organization, last.named) == ("invalidated", "Microsoft", False)
    assert "Bill Gates" not in client.get(f"/api/letters/{SLUG}/ledger").text
    audit = db.exec(select(AuditEntry).where(AuditEntry.action == "invalidated")).one()
    assert "spam: Not the real one" in audit.detail and "named" in audit.detail
    log = client.get(f"/authors/letters/{SLUG}/audit").text
    assert "Invalidated a signature" in log and "Bill" not in log
    daily = client.get(f"/api/letters/{SLUG}/daily.csv").text
    assert sum(int(line.rsplit(",", 1)[1]) for line in daily.splitlines()[1:]) == 3


def test_an_invalidated_person_cannot_confirm_back_in(client, signed, mailbox, db):
    assert sign_api(client, "troll@microsoft.com", slug=SLUG, name="Again", show_name=True)
    mailbox.wait_for(5)
    pending_before = mailbox.last_token(to="troll@microsoft.com")
    invalidate(client, signed["troll"], reason="spam")
    db.rollback()
    assert db.exec(select(BlockedSigner)).one()
    assert db.exec(select(PendingSignature).where(PendingSignature.used_at == None)).all() == []  # noqa: E711
    refused = confirm_api(client, pending_before)
    assert refused.status_code == 400
    # A fresh link, asked for after the invalidation, is refused too, with a clear message.
    assert sign_api(client, "Troll+again@Microsoft.com", slug=SLUG).status_code == 202
    mailbox.wait_for(6)
    token = mailbox.last_token(to="troll+again@microsoft.com")
    response = confirm_api(client, token)
    assert response.status_code == 400
    assert "removed this signature" in response.json()["error"]["message"]
    page = client.get(f"/verify/{token}")
    html = client.post(f"/verify/{token}", data={"csrftoken": csrf_from(page.text)})
    assert html.status_code == 400 and "removed this signature" in html.text
    assert counts(db, SLUG)["verified"] == 3
    assert_consistent(db, SLUG)


def test_a_reason_is_required(client, signed, db):
    missing = invalidate(client, signed["hidden"])
    assert missing.status_code == 422
    assert 'aria-describedby="reason-error"' in missing.text
    other = invalidate(client, signed["hidden"], reason="other")
    assert other.status_code == 422 and 'id="details-error"' in other.text
    forged = invalidate(client, signed["hidden"], reason="because")
    assert forged.status_code == 422
    assert counts(db, SLUG)["verified"] == 4
    gone = invalidate(client, signed["hidden"], reason="not_employee")
    assert gone.status_code == 303
    assert invalidate(client, signed["hidden"], reason="spam").status_code == 404


def test_unknown_or_foreign_signatures_are_not_found(client, signed, engine, mailbox, db):
    create_draft(client, slug="another")
    publish(client, "another")
    sign(client, mailbox, "x@github.com", "another")
    db.rollback()
    foreign = db.exec(select(Signature).where(Signature.email_hash.is_not(None))).all()[-1]
    for signature_id in [foreign.id, 999999]:
        assert hide(client, signature_id).status_code == 409
        response = invalidate(client, signature_id, reason="spam")
        assert response.status_code == 404
    assert counts(db, "another")["verified"] == 1


def test_concurrent_moderation_of_one_signature_counts_once(client, signed, db):
    app = client.app

    async def both():
        async def one(action):
            try:
                async with app.state.writer() as session:
                    if action == "hide":
                        await moderation.hide_name(
                            session, Act(signed["author"], SLUG), signed["troll"], keyring(SECRET)
                        )
                    else:
                        await moderation.invalidate(
                            session, Act(signed["author"], SLUG), signed["troll"], "spam"
                        )
                return "done"
            except moderation.AlreadyDone:
                return "already"

        return await asyncio.gather(one("invalidate"), one("invalidate"), one("hide"))

    results = client.portal.call(both)
    assert results.count("done") >= 1 and "done" in results[:2]
    c = assert_consistent(db, SLUG)
    assert c["verified"] == 3


def test_a_hidden_name_stays_hidden_whatever_the_signer_does(client, signed, mailbox, db):
    """The troll signs again with their name shown, asks for a reveal threshold, and tries
    the manage link: the name never comes back, and every count stays exact."""
    from tests.record.test_signer_control import MANAGE

    assert hide(client, signed["troll"]).status_code == 303
    after_hiding = assert_consistent(db, SLUG)

    sign(client, mailbox, "troll@microsoft.com", SLUG, name="Bill Gates", show_name=True)
    asked = client.post(
        f"/api/letters/{SLUG}/signatures",
        json={"email": "troll@microsoft.com", "name": "Bill Gates", "reveal_at": 10},
    )
    assert asked.status_code == 202
    assert confirm_api(client, mailbox.last_token("troll@microsoft.com")).status_code == 200
    db.rollback()
    troll = db.get(Signature, signed["troll"])
    assert (troll.show_name, troll.name, troll.title, troll.reveal_at) == (False, "", "", None)
    assert assert_consistent(db, SLUG) == after_hiding
    for path in (
        f"/letters/{SLUG}",
        f"/api/letters/{SLUG}/signatures",
        f"/api/letters/{SLUG}/ledger",
    ):
        assert "Bill Gates" not in client.get(path).text

    count = len(mailbox.messages)
    client.post(
        f"/letters/{SLUG}/manage",
        data={"csrftoken": letter_csrf(client, SLUG), "email": "troll@microsoft.com"},
    )
    mailbox.wait_for(count + 1)
    token = MANAGE.search(mailbox.text_of(mailbox.messages[-1])).group(1)
    manage_page = client.get(f"/manage/{token}")
    refused = client.post(
        f"/manage/{token}",
        data={
            "csrftoken": csrf_from(manage_page.text),
            "action": "update",
            "show_name": "1",
            "name": "Bill Gates",
        },
    )
    assert refused.status_code == 422
    assert "authors hid the name" in refused.text
    assert assert_consistent(db, SLUG) == after_hiding
    db.rollback()
    assert db.get(Signature, signed["troll"]).show_name is False
