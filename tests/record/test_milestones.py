"""Milestone emails: once per round number (and the goal), decided where the count moves."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import update
from sqlmodel import Session, col, func, select

from letters.db import writer
from letters.mail import outbox
from letters.models import Letter, Milestone
from letters.record.milestones import is_round
from letters.record.signing import confirm
from tests.authors.helpers import (
    create_draft,
    letter_row,
    post_form,
    publish,
    queued,
    sign,
    sign_in_as,
)
from tests.helpers import assert_consistent, sign_api

SLUG = "drop-the-contract"


def test_round_numbers():
    rounds = [n for n in range(1, 1_000_001) if is_round(n)]
    assert rounds == [
        100, 250, 500, 1000, 2500, 5000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
        1_000_000,
    ]  # fmt: skip


@pytest.fixture
def published(client, engine):
    sign_in_as(client, engine, "ada@example.org")
    create_draft(client)
    publish(client, SLUG)
    page = f"/authors/letters/{SLUG}/authors"
    post_form(client, page, {"email": "bob@example.org"}, page=page)


def set_counts(engine, verified: int) -> None:
    """Pretend the letter already has `verified` signatures (only the counter matters here)."""
    with Session(writer(engine)) as session:
        session.exec(update(Letter).where(col(Letter.slug) == SLUG).values(verified_count=verified))
        session.commit()


def milestone_mail(db) -> list[tuple[str, str]]:
    return [(m.to, m.subject) for m in queued(db) if "verified signatures" in m.subject]


def test_the_authors_hear_when_the_count_passes_100_once(client, published, engine, db, mailbox):
    set_counts(engine, 98)
    sign(client, mailbox, "a@github.com", SLUG)
    assert milestone_mail(db) == []
    sign(client, mailbox, "b@github.com", SLUG)  # the 100th
    subject = "“Drop the contract” passed 100 verified signatures"
    assert milestone_mail(db) == [("ada@example.org", subject), ("bob@example.org", subject)]
    # The count falls back (an invalidation, a withdrawal) and passes 100 again: no new email.
    set_counts(engine, 99)
    sign(client, mailbox, "c@github.com", SLUG)
    assert len(milestone_mail(db)) == 2
    assert db.exec(select(func.count()).select_from(Milestone)).one() == 1
    # The outbox sends them.
    count = len(mailbox.messages)
    state = client.app.state
    client.portal.call(outbox.drain, state.writer, state.mail, state.settings.keys)
    mailbox.wait_for(count + 2)
    sent = [m for m in mailbox.messages if "passed 100" in str(m["Subject"])]
    assert sorted(m["To"] for m in sent) == ["ada@example.org", "bob@example.org"]
    text = mailbox.text_of(sent[0])
    assert f"http://testserver/authors/letters/{SLUG}" in text
    assert "@github.com" not in text


def test_reaching_the_goal_is_a_milestone_too(client, published, mailbox, db):
    page = f"/authors/letters/{SLUG}/settings"
    post_form(client, page, {"goal": "2", "ask_title": "1"}, page=page)
    sign(client, mailbox, "a@github.com", SLUG)
    sign(client, mailbox, "b@github.com", SLUG)
    subjects = {subject for _, subject in queued_subjects(db)}
    assert subjects == {"“Drop the contract” reached its goal of 2 signatures"}


def queued_subjects(db):
    return [(m.to, m.subject) for m in queued(db) if "Drop the contract" in m.subject]


def test_concurrent_confirmations_send_each_milestone_once(client, published, engine, db, mailbox):
    set_counts(engine, 95)
    already = len(mailbox.messages)
    for number in range(10):
        assert sign_api(client, f"p{number}@github.com", slug=SLUG).status_code == 202
    mailbox.wait_for(already + 10)
    tokens = [mailbox.last_token(to=f"p{number}@github.com") for number in range(10)]
    app = client.app

    async def storm():
        async def one(token):
            async with app.state.writer() as session:
                await confirm(session, token, app.state.signer, app.state.settings)

        await asyncio.gather(*(one(token) for token in tokens))

    assert len(tokens) == 10
    client.portal.call(storm)
    assert letter_row(db, SLUG).verified_count == 105
    assert len(milestone_mail(db)) == 2  # one email to each author, once
    assert db.exec(select(Milestone.threshold)).all() == [100]


def test_no_email_goes_to_a_disabled_author(client, published, engine, db, mailbox):
    from letters.models import Author, utcnow

    with Session(writer(engine)) as session:
        bob = session.exec(select(Author).where(Author.email == "bob@example.org")).one()
        bob.disabled_at = utcnow()
        session.add(bob)
        session.commit()
    set_counts(engine, 249)
    sign(client, mailbox, "a@github.com", SLUG)
    assert [to for to, _ in milestone_mail(db)] == ["ada@example.org"]


def test_counts_stay_exact_around_milestones(client, published, mailbox, db):
    for number in range(3):
        sign(client, mailbox, f"x{number}@github.com", SLUG)
    assert_consistent(db, SLUG)
