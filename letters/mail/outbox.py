"""The email outbox: messages written in the transaction that asks for them, sent afterwards.

A sign request inserts its email here in the same transaction as the pending signature, so
a crash between "signed" and "sent" loses nothing and an SMTP outage only delays mail.
Senders (a task inside each app process, letters.jobs.Sender, and `letters worker`) claim
rows with a lease:
`FOR UPDATE SKIP LOCKED` on PostgreSQL, the write lock on SQLite, so several senders never
take the same message. A message a request queues for its own process to send right
after answering is written already leased (`enqueue(lease=True)`, then `send_leased`):
no claim transaction. A sender that dies mid-send leaves its lease to expire, and the
message is tried again. Every attempt is counted, with the server's codes only, in the
transaction that deletes or reschedules its message (letters.mail.tallies).

Nothing readable is written: each message (recipient, subject, bodies and the rest) is
sealed (letters.sealing) under the current key and bound to its row's id, which is chosen
here at random before the row is written (so a statement can queue a message together
with what it is about, with no round trip to learn an id). Only a sending process opens
it, in memory, just before handing it to the mail server. A sent message is deleted. A
message no active key opens (sealed under a key since retired) is deleted without being
sent, and counted (`DrainResult.dropped`): trying it again would never succeed.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from letters import i18n
from letters.db import on_its_own
from letters.mail.backend import Attachment, Channels, MailBackend, MailError, Message
from letters.models import Delivery, Letter, OutboxMessage, utcnow
from letters.sealing import OUTBOX, Keyring, Unsealable

logger = logging.getLogger("letters.mail.outbox")

LEASE = timedelta(seconds=60)
MAX_ATTEMPTS = 12
BATCH = 20


def backoff(attempts: int) -> timedelta:
    """Wait before the next try: 10 s, 20 s, 40 s … capped at 30 minutes."""
    return timedelta(seconds=min(10 * 2 ** max(attempts - 1, 0), 1800))


async def enqueue(
    session: AsyncSession,
    keys: Keyring,
    message: Message | Job,
    now: datetime | None = None,
    delivery_id: int | None = None,
    lease: bool = False,
) -> int:
    """Add a message, sealed, to the caller's transaction (it can go once that commits);
    its id.

    With `delivery_id`, the delivery it carries is marked sent (or failed) when the mail
    server accepts (or, after every try, refuses) it. With `lease`, the row is written
    already leased to this process (for LEASE), which sends it right after the commit
    (`send_leased`); if this process dies first, the lease runs out and any sender tries it.
    """
    now = now or utcnow()
    row = OutboxMessage(**row_values(keys, message, now, delivery_id=delivery_id, lease=lease))
    session.add(row)
    await session.flush()
    return row.id


async def queue_job(
    session: AsyncSession, keys: Keyring, kind: str, args: dict[str, Any], now: datetime
) -> int:
    """Queue a job (`Job`) in the reader's language and commit: the request that asks for
    it has done its work. Returns the job's id, for the process's job runner."""
    job = Job(kind, {**args, "language": i18n.current()})
    job_id = await enqueue(session, keys, job, now)
    await session.commit()
    return job_id


def new_id() -> int:
    """A queued message's id: random, positive, 63 bits (no collision in practice)."""
    return secrets.randbelow(2**63 - 1) + 1


@dataclass(frozen=True)
class Job:
    """Work a sender does before there is anything to send: `kind` names the preparer that
    turns it into a message, or into nothing (letters.jobs.preparer), `args` what that
    needs. Queued sealed, like a message. A request whose answer must not tell whether
    anything will be sent (did this address sign? is it an author's?) queues a job either
    way, so it runs the same statements either way, and only the sender, after the answer
    has gone, finds out whether there is an email to send."""

    kind: str
    args: dict[str, Any]


# A job's preparer: the message to send, or None when there is nothing to send. It runs
# in the sender, may write (a link's row) and commits what it writes.
Prepare = Callable[[Job], Awaitable[Message | None]]


def seal(keys: Keyring, message: Message | Job, row_id: int) -> str:
    """The message as its row keeps it, under the current key, bound to the row's id."""
    plain = {"job": asdict(message)} if isinstance(message, Job) else asdict(message)
    return keys.seal(OUTBOX, json.dumps(plain, ensure_ascii=False).encode(), f"outbox:{row_id}")


def row_values(
    keys: Keyring,
    message: Message | Job,
    now: datetime,
    delivery_id: int | None = None,
    lease: bool = False,
) -> dict[str, Any]:
    """The columns of a queued message (`ROW_COLUMNS`), for `enqueue` and for statements
    that queue an email together with what it is about (letters.record.signing)."""
    row_id = new_id()
    return {
        "id": row_id,
        "sealed": seal(keys, message, row_id),
        "created_at": now,
        "next_attempt_at": now,
        "locked_until": now + LEASE if lease else None,
        "attempts": 0,
        "delivery_id": delivery_id,
    }


ROW_COLUMNS = tuple(
    row_values(Keyring("columns"), Message(to="", subject="", text="", html=""), utcnow())
)


@dataclass(frozen=True)
class Leased:
    """A queued message leased to the process that queued it (`enqueue(lease=True)`)."""

    id: int
    message: Message


async def send_leased(
    maker: async_sessionmaker[AsyncSession], backend: MailBackend, leased: Leased
) -> DrainResult:
    """Send a message this process queued with a lease (no claim needed), then delete it."""
    row = OutboxMessage(id=leased.id, sealed="", attempts=0)
    return await _send_one(maker, backend, row, leased.message)


@dataclass(frozen=True)
class DrainResult:
    sent: int = 0
    failed: int = 0
    # Deleted unsent: no active key opens them (sealed under a key since retired).
    dropped: int = 0
    # Jobs whose preparer found nothing to send (the address had not signed, say).
    skipped: int = 0

    def __add__(self, other: DrainResult) -> DrainResult:
        return DrainResult(
            self.sent + other.sent,
            self.failed + other.failed,
            self.dropped + other.dropped,
            self.skipped + other.skipped,
        )

    @property
    def done(self) -> int:
        return self.sent + self.failed + self.dropped + self.skipped


async def claim(
    maker: async_sessionmaker[AsyncSession], now: datetime, limit: int = BATCH
) -> list[OutboxMessage]:
    """Lease up to `limit` due messages to this sender, committing the lease."""
    async with maker() as session:
        statement = (
            select(OutboxMessage)
            .where(
                col(OutboxMessage.next_attempt_at) <= now,
                (col(OutboxMessage.locked_until).is_(None))
                | (col(OutboxMessage.locked_until) < now),
            )
            .order_by(col(OutboxMessage.next_attempt_at), col(OutboxMessage.id))
            .limit(limit)
        )
        if session.bind is not None and session.bind.dialect.name == "postgresql":
            statement = statement.with_for_update(skip_locked=True)
        rows = list((await session.exec(statement)).all())
        if not rows:
            await session.rollback()
            return []
        ids = [row.id for row in rows]
        await session.exec(
            update(OutboxMessage)
            .where(col(OutboxMessage.id).in_(ids))
            .values(locked_until=now + LEASE)
        )
        await session.commit()
        return rows


async def send_now(
    maker: async_sessionmaker[AsyncSession],
    backend: MailBackend,
    keys: Keyring,
    message_id: int,
    prepare: Prepare | None = None,
) -> DrainResult:
    """Send one queued message right away, unless another sender already has it."""
    now = utcnow()
    async with maker() as session:
        claimed = await session.exec(
            update(OutboxMessage)
            .where(
                col(OutboxMessage.id) == message_id,
                col(OutboxMessage.next_attempt_at) <= now,
                (col(OutboxMessage.locked_until).is_(None))
                | (col(OutboxMessage.locked_until) < now),
            )
            .values(locked_until=now + LEASE)
        )
        if claimed.rowcount != 1:
            await session.rollback()
            return DrainResult()
        row = await session.get(OutboxMessage, message_id)
        await session.commit()
    assert row is not None
    return await _open_and_send(maker, backend, keys, row, prepare)


async def drain(
    maker: async_sessionmaker[AsyncSession],
    backend: MailBackend,
    keys: Keyring,
    limit: int = 1000,
    prepare: Prepare | None = None,
) -> DrainResult:
    """Send what is due, up to `limit` messages (jobs prepared by `prepare`). `maker` must
    open writing sessions."""
    result = DrainResult()
    while (done := result.done) < limit:
        now = utcnow()
        batch = await claim(maker, now, min(BATCH, limit - done))
        if not batch:
            break
        for row in batch:
            result += await _open_and_send(maker, backend, keys, row, prepare)
    if result.sent or result.failed:
        from letters.mail import tallies  # tallies queue their alert through this module

        async with maker() as session:
            await tallies.prune(session, utcnow())
            await session.commit()
    return result


async def _open_and_send(
    maker: async_sessionmaker[AsyncSession],
    backend: MailBackend,
    keys: Keyring,
    row: OutboxMessage,
    prepare: Prepare | None = None,
) -> DrainResult:
    try:
        opened = message_of(row, keys)
    except Unsealable:
        async with maker() as session:
            await session.exec(delete(OutboxMessage).where(col(OutboxMessage.id) == row.id))
            await _mark_delivery(session, row.delivery_id, failed_at=utcnow())
            await session.commit()
        logger.warning("dropped outbox message %s: no active key opens it", row.id)
        return DrainResult(dropped=1)
    if isinstance(opened, Job):
        if prepare is None:
            raise RuntimeError(f"no preparer for the job in outbox row {row.id}")
        # Prepared again if the send fails and is retried: the email then carries a new link.
        message = await prepare(opened)
        if message is None:
            async with maker() as session:
                await session.exec(delete(OutboxMessage).where(col(OutboxMessage.id) == row.id))
                await session.commit()
            return DrainResult(skipped=1)
        return await _send_one(maker, backend, row, message)
    return await _send_one(maker, backend, row, opened)


async def _send_one(
    maker: async_sessionmaker[AsyncSession],
    backend: MailBackend,
    row: OutboxMessage,
    message: Message,
) -> DrainResult:
    from letters.mail import tallies  # tallies queue their alert through this module

    try:
        await backend.send(message)
    except MailError as error:
        attempts = row.attempts + 1
        now = utcnow()
        outcome = tallies.DROPPED if attempts >= MAX_ATTEMPTS else tallies.FAILED
        async with maker() as session:
            if attempts >= MAX_ATTEMPTS:
                # Give up: the link inside has expired long ago, and the address must go.
                await session.exec(delete(OutboxMessage).where(col(OutboxMessage.id) == row.id))
                await _mark_delivery(session, row.delivery_id, failed_at=utcnow())
                logger.warning("gave up on outbox message %s: %s", row.id, error)
            else:
                await session.exec(
                    update(OutboxMessage)
                    .where(col(OutboxMessage.id) == row.id)
                    .values(
                        attempts=attempts,
                        locked_until=None,
                        next_attempt_at=utcnow() + backoff(attempts),
                        last_error=str(error)[:200],
                    )
                )
                logger.warning("outbox message %s not sent (try %s): %s", row.id, attempts, error)
            codes = (error.reply_code, error.status)
            await session.exec(tallies.counted(session, message.channel, outcome, now, *codes))
            if isinstance(backend, Channels) and backend.alerting is not None:
                await tallies.alert_if_failing(session, backend.alerting, now)
            await session.commit()
        return DrainResult(failed=1)
    async with maker() as session:
        gone = delete(OutboxMessage).where(col(OutboxMessage.id) == row.id)
        if row.delivery_id is None and on_its_own(session):
            # PostgreSQL, the common case: the row deleted and the attempt counted in one
            # statement on its own, so the tally's row is held for that statement only.
            await session.connection(execution_options=on_its_own(session))
            sent = tallies.counted(session, message.channel, tallies.SENT, utcnow())
            await session.exec(sent.add_cte(gone.returning(col(OutboxMessage.id)).cte("gone")))
        else:
            await session.exec(gone)
            await _mark_delivery(session, row.delivery_id, sent_at=utcnow())
            await session.exec(tallies.counted(session, message.channel, tallies.SENT, utcnow()))
        await session.commit()
    return DrainResult(sent=1)


def message_of(row: OutboxMessage, keys: Keyring) -> Message | Job:
    """Open a queued message (or job), in memory. Raises Unsealable."""
    plain = json.loads(keys.open(OUTBOX, row.sealed, f"outbox:{row.id}"))
    if "job" in plain:
        return Job(**plain["job"])
    plain["attachments"] = tuple(Attachment(**item) for item in plain["attachments"])
    return Message(**plain)


async def _mark_delivery(
    session: AsyncSession, delivery_id: int | None, **moment: datetime
) -> None:
    """Say on the delivery that its email was accepted (sent_at) or given up (failed_at),
    and move its letter's `updated_at`, so that pages showing the delivery are redrawn."""
    if delivery_id is None:
        return
    letter_id = (
        await session.exec(
            update(Delivery)
            .where(col(Delivery.id) == delivery_id)
            .values(moment)
            .returning(col(Delivery.letter_id))
        )
    ).scalar_one_or_none()
    if letter_id is not None:
        await session.exec(
            update(Letter).where(col(Letter.id) == letter_id).values(updated_at=utcnow())
        )
