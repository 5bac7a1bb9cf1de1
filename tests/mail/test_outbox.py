"""The email outbox: queued in the sign transaction, sent once, retried, then forgotten."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlmodel import select

from letters.db import make_async_engine, make_sessionmaker, writer
from letters.mail import outbox
from letters.mail.backend import MailError, Message
from letters.models import OutboxMessage, utcnow
from letters.sealing import Unsealable
from tests.helpers import sign_api


class Recorder:
    """A mail backend that records what it sends (or fails like a server that is down)."""

    def __init__(self, fail: bool = False, delay: float = 0.0) -> None:
        self.sent: list[Message] = []
        self.fail = fail
        self.delay = delay

    async def send(self, message: Message) -> None:
        await asyncio.sleep(self.delay)
        if self.fail:
            raise MailError("SMTPConnectError from 127.0.0.1:1")
        self.sent.append(message)


def run(settings, work):
    """Run `work(maker)` with a writing sessionmaker on a fresh engine, then dispose of it."""

    async def main():
        engine = make_async_engine(settings)
        try:
            return await work(make_sessionmaker(writer(engine)))
        finally:
            await engine.dispose()

    return asyncio.run(main())


def queue(settings, count):
    async def work(maker):
        async with maker() as session:
            for number in range(count):
                message = Message(
                    f"p{number}@microsoft.com", "Subject", f"text {number}", "<p>h</p>"
                )
                await outbox.enqueue(session, settings.keys, message)
            await session.commit()

    run(settings, work)


def rows(db):
    db.rollback()
    return db.exec(select(OutboxMessage)).all()


def test_a_sign_request_queues_its_email_in_the_same_transaction(settings, letter, db, mailbox):
    from starlette.testclient import TestClient

    from letters.app import create_app

    settings.mail_in_app = False  # nothing sends: the email must wait in the outbox
    with TestClient(create_app(settings)) as client:
        assert sign_api(client, "queued@microsoft.com").status_code == 202
        assert sign_api(client, "refused@gmail.com").status_code == 422
    [row] = rows(db)
    message = outbox.message_of(row, settings.keys)
    assert message.to == "queued@microsoft.com"
    assert "/verify/" in message.text
    # The row holds nothing readable: no address, no link, no text.
    assert "queued" not in row.sealed and "verify" not in row.sealed
    assert mailbox.messages == []


def test_drain_sends_each_message_once_and_deletes_it(settings, db):
    queue(settings, 5)
    backend = Recorder()
    result = run(settings, lambda maker: outbox.drain(maker, backend, settings.keys))
    assert (result.sent, result.failed) == (5, 0)
    assert sorted(m.to for m in backend.sent) == sorted(f"p{n}@microsoft.com" for n in range(5))
    assert rows(db) == []  # no plaintext address is left behind


def test_concurrent_senders_never_send_the_same_message_twice(settings, db):
    queue(settings, 60)
    backend = Recorder(delay=0.001)

    async def work(maker):
        return await asyncio.gather(
            *[outbox.drain(maker, backend, settings.keys) for _ in range(6)]
        )

    results = run(settings, work)
    assert sum(result.sent for result in results) == 60
    assert len(backend.sent) == len({m.to for m in backend.sent}) == 60
    assert rows(db) == []


def test_failures_are_retried_with_backoff_then_given_up(settings, db):
    queue(settings, 1)
    result = run(settings, lambda maker: outbox.drain(maker, Recorder(fail=True), settings.keys))
    assert result.failed == 1
    [row] = rows(db)
    assert row.attempts == 1
    assert row.locked_until is None
    assert row.next_attempt_at > utcnow() + timedelta(seconds=5)  # backoff
    assert "127.0.0.1" in row.last_error
    # Not due yet: a second drain sends nothing.
    assert run(settings, lambda maker: outbox.drain(maker, Recorder(), settings.keys)).sent == 0

    row.attempts = outbox.MAX_ATTEMPTS - 1
    row.next_attempt_at = utcnow()
    db.add(row)
    db.commit()
    run(settings, lambda maker: outbox.drain(maker, Recorder(fail=True), settings.keys))
    assert rows(db) == []  # given up: the address does not stay forever


def test_a_lease_left_by_a_dead_sender_expires(settings, db):
    queue(settings, 1)
    [row] = rows(db)
    row.locked_until = utcnow() + timedelta(seconds=30)  # a sender died holding it
    db.add(row)
    db.commit()
    assert run(settings, lambda maker: outbox.drain(maker, Recorder(), settings.keys)).sent == 0
    row = rows(db)[0]
    row.locked_until = utcnow() - timedelta(seconds=1)
    db.add(row)
    db.commit()
    assert run(settings, lambda maker: outbox.drain(maker, Recorder(), settings.keys)).sent == 1


def test_backoff_grows_and_is_capped():
    assert outbox.backoff(1) == timedelta(seconds=10)
    assert outbox.backoff(2) == timedelta(seconds=20)
    assert outbox.backoff(20) == timedelta(minutes=30)


def test_the_worker_command_sends_the_outbox(settings, db, mailbox, monkeypatch, tmp_path, capsys):
    from letters.cli import main

    queue(settings, 3)
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("SECRET_KEY", settings.secret_key)
    monkeypatch.setenv("SMTP_URL", mailbox.url)
    monkeypatch.chdir(tmp_path)
    main(["worker", "--once"])
    assert "sent 3, failed 0" in capsys.readouterr().out
    mailbox.wait_for(3)
    assert rows(db) == []


def test_expired_links_and_rate_limit_rows_are_deleted(client, letter, mailbox, db, settings):
    from letters.models import PendingSignature, RateLimitHit
    from letters.record.retention import purge_expired

    sign_api(client, "old@microsoft.com", name="Typed Name")
    sign_api(client, "fresh@microsoft.com")
    db.rollback()
    old = db.exec(select(PendingSignature)).first()
    old_id = old.id
    old.expires_at = utcnow() - timedelta(seconds=1)
    db.add(old)
    for hit in db.exec(select(RateLimitHit)).all():
        hit.expires_at = utcnow() - timedelta(seconds=1)
        db.add(hit)
    db.commit()
    purged = run(settings, purge_expired)
    assert purged.pending_signatures == 1
    assert purged.rate_limit_rows >= 3
    db.rollback()
    remaining = db.exec(select(PendingSignature)).all()
    assert len(remaining) == 1
    assert remaining[0].id != old_id


def test_a_message_sealed_for_one_row_does_not_open_in_another(settings, db):
    queue(settings, 2)
    first, second = rows(db)
    first.sealed, second.sealed = second.sealed, first.sealed
    with pytest.raises(Unsealable):
        outbox.message_of(first, settings.keys)


def test_messages_sealed_under_an_old_key_still_go_while_it_is_listed(settings, db):
    queue(settings, 2)
    old_key = settings.secret_key
    settings.secret_key = "a-new-secret-key-that-is-long-enough-9876543210"
    settings.old_secret_keys = old_key
    backend = Recorder()
    result = run(settings, lambda maker: outbox.drain(maker, backend, settings.keys))
    assert (result.sent, result.dropped) == (2, 0)
    assert rows(db) == []


def test_messages_no_active_key_opens_are_dropped_and_counted_not_retried(settings, db):
    queue(settings, 3)
    settings.secret_key = "a-new-secret-key-that-is-long-enough-9876543210"
    backend = Recorder()
    result = run(settings, lambda maker: outbox.drain(maker, backend, settings.keys))
    assert (result.sent, result.failed, result.dropped) == (0, 0, 3)
    assert backend.sent == []
    assert rows(db) == []
