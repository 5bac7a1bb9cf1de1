"""One lock order everywhere: every transaction that moves a count takes the rows shared by
many signers in the same order, so no two of them can wait for each other (a deadlock).

The order (letters.record.signing, letters.record.counting): the signature's row, then the
letter's row, then the organization's count, then the day's count. Each test records the
SQL a transaction sends (on PostgreSQL the confirming statement takes several in one
statement, in the order its parts are written) and checks that each of these tables is
first written or locked in that order. Reveal thresholds lock *other* waiting signatures
after the letter's row on purpose, with SKIP LOCKED (see letters.record.reveal); those
statements are left out. On PostgreSQL only: SQLite has one writer at a time and no row
locks (it renders no FOR UPDATE), so there is no order to keep there.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import event, update
from sqlmodel import Session, col, select

from letters.db import writer
from letters.forms import Requester
from letters.mail import outbox
from letters.mail.compose import manage_email
from letters.models import Letter, OrganizationCount, OutboxMessage, Signature
from letters.record import signer_control
from letters.record.signer_control import Action, Details
from tests.authors.helpers import create_draft, post_form, publish, sign, sign_in_as
from tests.conftest import ON_POSTGRES
from tests.helpers import confirm_api, names_of, sign_api

pytestmark = pytest.mark.skipif(not ON_POSTGRES, reason="row locks: PostgreSQL only")

SLUG = "drop-the-contract"
LIST = f"/authors/letters/{SLUG}/signatures"
ORDER = ("signature", "letter", "organization_count", "daily_count")
WRITES = re.compile(r"\b(insert into|update|delete from) (" + "|".join(ORDER) + r")\b")
LOCKED_READ = re.compile(r"\bfrom (" + "|".join(ORDER) + r")\b")


@contextmanager
def recorded(app) -> Iterator[list[str]]:
    """The SQL statements the app sends inside the block."""
    statements: list[str] = []

    def before(conn, cursor, statement, parameters, context, executemany) -> None:
        statements.append(" ".join(statement.lower().split()))

    engine = app.state.engine.sync_engine
    event.listen(engine, "before_cursor_execute", before)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", before)


def first_locks(statements: list[str]) -> list[str]:
    """The shared tables in the order each is first written or read FOR UPDATE."""
    seen: list[str] = []
    for sql in statements:
        if "skip locked" in sql:
            continue
        found = [(m.start(), m.group(2)) for m in WRITES.finditer(sql)]
        if re.search(r"\bfor (no key )?update\b", sql):
            found += [(m.start(), m.group(1)) for m in LOCKED_READ.finditer(sql)]
        for _, table in sorted(found):
            if table not in seen:
                seen.append(table)
    return seen


def assert_in_order(statements: list[str], expected: list[str]) -> None:
    tables = first_locks(statements)
    assert tables == sorted(tables, key=ORDER.index), tables
    assert tables[: len(expected)] == expected, tables


@pytest.fixture
def published(client, engine):
    sign_in_as(client, engine, "ada@example.org")
    create_draft(client)
    publish(client, SLUG)


def token_for(client, mailbox, email, **fields) -> str:
    count = len(mailbox.messages)
    assert sign_api(client, email, slug=SLUG, **fields).status_code == 202
    mailbox.wait_for(count + 1)
    return mailbox.last_token(to=email)


def manage(client, email: str, action: Action, details: Details | None = None):
    app = client.app
    settings, signer = app.state.settings, app.state.signer

    async def run():
        async with app.state.writer() as session:
            job_id = await signer_control.request_link(
                session,
                slug=SLUG,
                email=email,
                requester=Requester("198.51.100.7", signer, settings),
            )
        # What the sender does with the queued job: a link, since the address signed.
        async with app.state.writer() as session:
            row = await session.get(OutboxMessage, job_id)
            job = outbox.message_of(row, settings.keys)
            message = await signer_control.prepare_link(
                session, job.args, signer, settings, manage_email(settings)
            )
        assert message is not None
        token = re.search(r"/manage/([A-Za-z0-9_\-.]+)", message.text).group(1)
        async with app.state.writer() as session:
            return await signer_control.apply(session, token, action, details, signer, settings)

    return client.portal.call(run)


def signature_id(db, name: str) -> int:
    db.rollback()
    [found] = [s.id for s in db.exec(select(Signature)).all() if names_of(s)[0] == name]
    return found


def test_a_new_confirmation_locks_signature_letter_organization_day(client, published, mailbox):
    token = token_for(client, mailbox, "new@github.com", name="New Person")
    with recorded(client.app) as statements:
        assert confirm_api(client, token).status_code == 200
    assert_in_order(statements, ["signature", "letter", "organization_count", "daily_count"])


def test_confirming_again_locks_the_signature_then_the_letter(client, published, mailbox):
    sign(client, mailbox, "again@github.com", SLUG, name="Again")
    token = token_for(client, mailbox, "again@github.com", name="Again", show_name=True)
    with recorded(client.app) as statements:
        response = confirm_api(client, token)
    assert response.json()["outcome"] == "updated"
    assert_in_order(statements, ["signature", "letter"])


def test_manage_links_lock_the_signature_first(client, published, mailbox):
    sign(client, mailbox, "self@github.com", SLUG, name="Self")
    details = Details(name="Self", title="", show_name=True, reveal_at=None)
    with recorded(client.app) as statements:
        manage(client, "self@github.com", Action.update, details)
    assert_in_order(statements, ["signature", "letter"])
    with recorded(client.app) as statements:
        manage(client, "self@github.com", Action.withdraw)
    assert_in_order(statements, ["signature", "letter", "organization_count", "daily_count"])


def test_moderation_locks_the_signature_first(client, published, mailbox, db):
    sign(client, mailbox, "troll@microsoft.com", SLUG, name="Troll", show_name=True)
    sign(client, mailbox, "spam@microsoft.com", SLUG, name="Spam")
    with recorded(client.app) as statements:
        post_form(client, f"{LIST}/{signature_id(db, 'Troll')}/hide", page=LIST)
    assert_in_order(statements, ["signature", "letter"])
    page = f"{LIST}/{signature_id(db, 'Spam')}/invalidate"
    with recorded(client.app) as statements:
        post_form(client, page, {"reason": "spam"}, page=page)
    assert_in_order(statements, ["signature", "letter", "organization_count", "daily_count"])


def test_reaching_a_reveal_threshold_and_a_milestone_keeps_the_order(
    client, published, engine, mailbox, db
):
    sign(client, mailbox, "waits@github.com", SLUG, name="Waiting Person")
    manage(
        client,
        "waits@github.com",
        Action.update,
        Details(name="Waiting Person", title="", show_name=False, reveal_at=10),
    )
    # Pretend eight more colleagues and 97 other people signed: the next is the 10th and 100th.
    with Session(writer(engine)) as session:
        session.exec(
            update(OrganizationCount)
            .where(col(OrganizationCount.organization) == "GitHub")
            .values(count=9)
        )
        session.exec(update(Letter).where(col(Letter.slug) == SLUG).values(verified_count=99))
        session.commit()
    token = token_for(client, mailbox, "tenth@github.com")
    with recorded(client.app) as statements:
        assert confirm_api(client, token).status_code == 200
    assert_in_order(statements, ["signature", "letter", "organization_count", "daily_count"])
    assert any("skip locked" in sql for sql in statements) or not any(
        "for update" in sql for sql in statements
    )
    db.rollback()
    shown = db.exec(select(Signature.show_name).where(Signature.name == "Waiting Person")).one()
    assert shown
    assert any(sql.startswith("insert into milestone") for sql in statements)
