"""Mail health: every sending attempt counted by clock hour (UTC), channel, outcome and the
server's codes, since a sent message is deleted and leaves nothing else behind; and an
alert to the admins when too many attempts fail within an hour.

What is kept is only what a postmaster needs and no one can misuse: counts, SMTP reply
codes and enhanced status codes. Never an address, a subject or a reply's text (servers
quote the recipient in it). A tally is written in the transaction that deletes the sent
message or reschedules the failed one, as that transaction's last statement, into one of
SHARDS rows picked at random, so that concurrent senders seldom wait for the same row.
The alert is decided like a milestone: a row per day inserted with ON CONFLICT DO NOTHING,
so of any number of senders one queues it, once.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from letters.db import dialect_insert, table_of
from letters.mail import compose
from letters.mail.backend import Alerting
from letters.models import MailAlert, MailTally, OutboxMessage

SENT = "sent"
FAILED = "failed"  # tried again later
DROPPED = "dropped"  # given up after the last try
KEEP = timedelta(days=8)
SHARDS = 8


def hour_of(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def counted(
    session: AsyncSession,
    channel: str,
    outcome: str,
    now: datetime,
    reply_code: int = 0,
    status: str = "",
) -> Any:
    """The upsert that counts one attempt, to run in the caller's transaction (or as part of
    a statement that does more)."""
    table = table_of(MailTally)
    return (
        dialect_insert(session)(table)
        .values(
            hour=hour_of(now),
            channel=channel,
            outcome=outcome,
            reply_code=reply_code,
            status=status[:9],
            shard=random.randrange(SHARDS),
            count=1,
            last_at=now,
        )
        .on_conflict_do_update(
            index_elements=[
                table.c[name]
                for name in ("hour", "channel", "outcome", "reply_code", "status", "shard")
            ],
            set_={"count": table.c.count + 1, "last_at": now},
        )
    )


async def failures_since(session: AsyncSession, since: datetime) -> int:
    total = await session.exec(
        select(func.coalesce(func.sum(MailTally.count), 0)).where(
            col(MailTally.hour) >= since, col(MailTally.outcome) != SENT
        )
    )
    return int(total.one())


async def alert_if_failing(session: AsyncSession, alerting: Alerting, now: datetime) -> bool:
    """After a failure: queue the alert to every admin if this hour's failures reached the
    threshold and no alert went today, in the caller's transaction. Whether it queued one."""
    since = hour_of(now)
    failures = await failures_since(session, since)
    if failures < alerting.failures:
        return False
    table = table_of(MailAlert)
    inserted = (
        await session.exec(
            dialect_insert(session)(table)
            .values(day=now.date().isoformat(), failures=failures, sent_at=now)
            .on_conflict_do_nothing(index_elements=[table.c.day])
            .returning(table.c.id)
        )
    ).scalar_one_or_none()
    if inserted is None:
        return False
    context = {
        "failures": failures,
        "since": since.strftime("%H:%M"),
        "codes": [failure.code for failure in await last_failures(session, since, 5)],
        "admin_url": f"{alerting.base_url}/authors/admin",
        "site": alerting.base_url,
    }
    await compose.to_admins(session, alerting.keys, "mail_failing", context)
    return True


async def prune(session: AsyncSession, now: datetime) -> None:
    """Forget tallies and alerts older than a week (and a day), in the caller's transaction."""
    await session.exec(delete(MailTally).where(col(MailTally.hour) < now - KEEP))
    await session.exec(delete(MailAlert).where(col(MailAlert.sent_at) < now - KEEP))


@dataclass(frozen=True)
class Counts:
    sent: int = 0
    failed: int = 0  # attempts that failed (each message may fail several times)
    dropped: int = 0  # messages given up


@dataclass(frozen=True)
class Failure:
    last_at: datetime
    channel: str
    outcome: str
    reply_code: int
    status: str
    count: int

    @property
    def code(self) -> str:
        """ "550 5.7.1", or "no reply" when the server could not be reached."""
        if not self.reply_code:
            return "no reply"
        return f"{self.reply_code} {self.status}".strip()


@dataclass(frozen=True)
class Health:
    """What the admin page shows."""

    queued: int
    retrying: int
    since: datetime
    this_hour: Counts
    last_day: Counts
    failures: list[Failure] = field(default_factory=list)


async def last_failures(session: AsyncSession, since: datetime, limit: int) -> list[Failure]:
    """Failures since `since` by hour and code, the latest first."""
    rows = await session.exec(
        select(MailTally).where(col(MailTally.outcome) != SENT, col(MailTally.hour) >= since)
    )
    merged: dict[tuple[datetime, str, str, int, str], Failure] = {}
    for row in rows.all():  # a few rows an hour: the shards are added up here
        key = (row.hour, row.channel, row.outcome, row.reply_code, row.status)
        seen = merged.get(key)
        merged[key] = Failure(
            max(row.last_at, seen.last_at) if seen else row.last_at,
            row.channel,
            row.outcome,
            row.reply_code,
            row.status,
            row.count + (seen.count if seen else 0),
        )
    return sorted(merged.values(), key=lambda f: f.last_at, reverse=True)[:limit]


async def _counts(session: AsyncSession, since: datetime) -> Counts:
    rows = await session.exec(
        select(MailTally.outcome, func.sum(MailTally.count))
        .where(col(MailTally.hour) >= since)
        .group_by(col(MailTally.outcome))
    )
    by_outcome = {outcome: int(total) for outcome, total in rows.all()}
    return Counts(
        sent=by_outcome.get(SENT, 0),
        failed=by_outcome.get(FAILED, 0),
        dropped=by_outcome.get(DROPPED, 0),
    )


async def summary(session: AsyncSession, now: datetime) -> Health:
    """The queue, this clock hour's and the last 24 hours' attempts, the last failures."""
    since = hour_of(now)
    day = since - timedelta(hours=23)
    queued, retrying = (
        await session.exec(
            select(
                func.count(col(OutboxMessage.id)),
                func.count(col(OutboxMessage.id)).filter(col(OutboxMessage.attempts) > 0),
            )
        )
    ).one()
    return Health(
        queued=int(queued),
        retrying=int(retrying),
        since=since,
        this_hour=await _counts(session, since),
        last_day=await _counts(session, day),
        failures=await last_failures(session, day, 10),
    )
