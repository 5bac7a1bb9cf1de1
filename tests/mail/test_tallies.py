"""Mail health: attempts counted with the server's codes only, shown to admins, and an
alert when failures pass the threshold, against a real SMTP server that refuses."""

from __future__ import annotations

import logging

from sqlalchemy import text, update
from sqlmodel import select

from letters.mail import outbox
from letters.mail.backend import Message, make_backend
from letters.models import MailAlert, MailTally, OutboxMessage, utcnow
from tests.authors.helpers import make_author, queued, sign_in_as
from tests.conftest import free_port, make_settings
from tests.helpers import sign_api
from tests.mail.test_outbox import queue, rows, run

REFUSAL = "550 5.7.1 <{to}>: message refused, {to} looks like spam"


def tallies(db) -> dict[tuple[str, str, int, str], int]:
    """(channel, outcome, reply code, status) -> attempts, over every shard."""
    db.rollback()
    totals: dict[tuple[str, str, int, str], int] = {}
    for t in db.exec(select(MailTally)).all():
        key = (t.channel, t.outcome, t.reply_code, t.status)
        totals[key] = totals.get(key, 0) + t.count
    return totals


def dump(db) -> str:
    db.rollback()
    found = [db.exec(text(f"SELECT * FROM {t}")).all() for t in ("mail_tally", "mail_alert")]  # noqa: S608
    return repr(found)


def test_the_admin_page_shows_sends_and_failures_with_codes_and_no_address(
    client, engine, mailbox, letter, db, caplog
):
    caplog.set_level(logging.INFO)
    sign_in_as(client, engine, "admin@example.org", admin=True)
    assert sign_api(client, "first@microsoft.com").status_code == 202
    mailbox.wait_for(1)
    mailbox.refuse = REFUSAL.format(to="second@microsoft.com")
    assert sign_api(client, "second@microsoft.com").status_code == 202

    # The test server's own log ("mail.log") names recipients; the site's never does.
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("letters"))
    assert "SMTPDataError 550 5.7.1" in logged
    page = client.get("/authors/admin")
    assert page.status_code == 200
    assert "1 email waiting to be sent" in page.text
    assert "<code>550 5.7.1</code>" in page.text
    assert "Since" in page.text and "Last 24 hours" in page.text
    for secret in ("second@microsoft.com", "first@microsoft.com", "looks like spam"):
        assert secret not in page.text
        assert secret not in logged
        assert secret not in dump(db)
    assert tallies(db) == {("site", "sent", 0, ""): 1, ("site", "failed", 550, "5.7.1"): 1}
    # The queued message keeps the codes, not the reply's text, as its last error.
    assert [row.last_error.split(" from ")[0] for row in rows(db)] == ["SMTPDataError 550 5.7.1"]


def test_an_unreachable_server_counts_as_no_answer(database_url, engine, db):
    settings = make_settings(database_url, smtp_url=f"smtp://127.0.0.1:{free_port()}")
    queue(settings, 2)
    result = run(settings, lambda maker: outbox.drain(maker, make_backend(settings), settings.keys))
    assert result.failed == 2
    assert tallies(db) == {("site", "failed", 0, ""): 2}


def test_a_message_given_up_counts_as_dropped(settings, mailbox, db):
    mailbox.refuse = "554 5.7.1 no"
    queue(settings, 1)
    db.exec(update(OutboxMessage).values(attempts=outbox.MAX_ATTEMPTS - 1))
    db.commit()
    run(settings, lambda maker: outbox.drain(maker, make_backend(settings), settings.keys))
    assert rows(db) == []
    assert tallies(db) == {("site", "dropped", 554, "5.7.1"): 1}


def due_now(db) -> None:
    db.rollback()
    db.exec(update(OutboxMessage).values(next_attempt_at=utcnow()))
    db.commit()


def test_admins_are_alerted_once_a_day_when_failures_pass_the_threshold(
    database_url, mailbox, engine, db
):
    settings = make_settings(database_url, smtp_url=mailbox.url, mail_alert_failures=3)
    make_author(engine, "admin@example.org", admin=True)
    make_author(engine, "author@example.org")  # not an admin: not told
    backend = make_backend(settings)
    mailbox.refuse = REFUSAL.format(to="p0@microsoft.com")
    queue(settings, 2)
    run(settings, lambda maker: outbox.drain(maker, backend, settings.keys))
    assert queued(db, "admin@example.org") == []  # 2 < 3

    queue(settings, 2)
    due_now(db)
    run(settings, lambda maker: outbox.drain(maker, backend, settings.keys))
    alerts = queued(db, "admin@example.org")
    assert [message.subject for message in alerts] == ["Mail is failing"]
    db.rollback()
    assert len(db.exec(select(MailAlert)).all()) == 1

    due_now(db)  # more failures today: no second alert
    run(settings, lambda maker: outbox.drain(maker, backend, settings.keys))
    assert len(queued(db, "admin@example.org")) == 1

    mailbox.refuse = ""
    due_now(db)
    run(settings, lambda maker: outbox.drain(maker, backend, settings.keys))
    [alert] = [m for m in mailbox.messages if m["To"] == "admin@example.org"]
    body = mailbox.text_of(alert)
    assert "550 5.7.1" in body and "/authors/admin" in body
    assert "microsoft.com" not in body and "spam" not in body


def test_mail_health_counts_deliveries_apart(settings, mailbox, db):
    from tests.mail.test_outbox import Recorder  # noqa: F401  (the outbox tests' backend)

    async def work(maker):
        async with maker() as session:
            await outbox.enqueue(
                session,
                settings.keys,
                Message("ceo@microsoft.com", "S", "Some text.", "<p/>", channel="delivery"),
            )
            await session.commit()
        return await outbox.drain(maker, make_backend(settings), settings.keys)

    result = run(settings, work)
    assert result.failed == 1  # no DELIVERY_FROM: the channel has no sender
    assert tallies(db) == {("delivery", "failed", 0, ""): 1}


def test_only_codes_are_read_from_a_refusal():
    import aiosmtplib

    from letters.mail.backend import refusal

    refused = aiosmtplib.SMTPRecipientRefused(550, "5.1.1 <x@corp.example> unknown", "x")
    assert refusal(aiosmtplib.SMTPRecipientsRefused([refused])) == (550, "5.1.1")
    assert refusal(aiosmtplib.SMTPDataError(421, "try later, x@corp.example")) == (421, "")
    assert refusal(aiosmtplib.SMTPServerDisconnected("gone")) == (0, "")


def test_senders_failing_at_once_count_every_attempt_and_alert_once(
    database_url, mailbox, engine, db
):
    import asyncio

    settings = make_settings(database_url, smtp_url=mailbox.url, mail_alert_failures=3)
    make_author(engine, "admin@example.org", admin=True)
    mailbox.refuse = "451 4.7.1 try again later"
    queue(settings, 12)

    async def four_senders(maker):
        return await asyncio.gather(
            *(outbox.drain(maker, make_backend(settings), settings.keys, limit=3) for _ in range(4))
        )

    results = run(settings, four_senders)
    assert sum(result.failed for result in results) == 12
    assert tallies(db) == {("site", "failed", 451, "4.7.1"): 12}
    db.rollback()
    assert len(db.exec(select(MailAlert)).all()) == 1
    assert len(queued(db, "admin@example.org")) == 1
