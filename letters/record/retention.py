"""Deleting what is no longer needed: expired links, old rate-limit counts, erased names.

A pending signature holds what someone typed (a name, perhaps for somebody else's
address); once its link has expired it serves nothing, so it goes, and so do expired
manage links. Rate-limit rows go when their window is over. Letters whose authors chose
`erase_names_after_days` lose every name and title that many days after they close: in
the signature rows and in the public ledger (whose chain survives, see letters.record.ledger).
The counts stay exactly as they were, named and hidden alike, and the letter records
when its names were erased so the public pages can say so.

Senders run this between sending (see letters.jobs.Sender and `letters worker`), so
nothing piles up even if no one schedules a job; `letters purge` runs it once, from cron.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, or_, update
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from letters.db import SQLITE_BUSY_TIMEOUT_MS
from letters.models import (
    Letter,
    LetterStatus,
    ManageLink,
    PendingSignature,
    RateLimitHit,
    Signature,
    utcnow,
)
from letters.record import ledger


@dataclass(frozen=True)
class Purged:
    pending_signatures: int
    rate_limit_rows: int
    manage_links: int = 0
    letters_erased: int = 0  # letters whose names were erased this time
    names_erased: int = 0  # signature rows that lost a name, title or reveal threshold
    ledger_names_erased: int = 0  # ledger entries whose name was blanked


async def purge_expired(
    maker: async_sessionmaker[AsyncSession], now: datetime | None = None
) -> Purged:
    """Delete what has expired and erase names that are due; `maker` must open writers."""
    now = now or utcnow()
    async with maker() as session:
        pending = await session.exec(
            delete(PendingSignature).where(col(PendingSignature.expires_at) < now)
        )
        links = await session.exec(delete(ManageLink).where(col(ManageLink.expires_at) < now))
        limits = await session.exec(delete(RateLimitHit).where(col(RateLimitHit.expires_at) < now))
        await session.commit()
    await _forget_sqlite_wal(maker)
    erased = [0, 0, 0]
    for letter_id in await _due_for_erasure(maker, now):
        async with maker() as session:
            counts = await erase_names(session, letter_id, now)
            await session.commit()
        if counts is not None:
            erased = [erased[0] + 1, erased[1] + counts[0], erased[2] + counts[1]]
    return Purged(pending.rowcount, limits.rowcount, links.rowcount, *erased)


async def _forget_sqlite_wal(maker: async_sessionmaker[AsyncSession]) -> None:
    """SQLite: copy the write-ahead log into the database and empty it, if nobody is busy.

    Deleted rows (sent emails with their addresses) are overwritten in the database file
    (`secure_delete`), but the WAL file still holds the pages as they were written until a
    checkpoint resets it. A TRUNCATE checkpoint with no busy wait does that now when the
    database is idle, and gives up at once (to try again next time) when it is not, so it
    never holds up signing.
    """
    bind = maker.kw.get("bind")
    if not isinstance(bind, AsyncEngine) or bind.dialect.name != "sqlite":
        return

    def checkpoint(connection: Connection) -> None:
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute("PRAGMA busy_timeout=0")
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.close()

    async with bind.connect() as connection:
        await connection.run_sync(checkpoint)


async def _due_for_erasure(maker: async_sessionmaker[AsyncSession], now: datetime) -> list[int]:
    """Closed letters whose names are due to be erased (few rows: the date math is here)."""
    async with maker() as session:
        candidates = (
            await session.exec(
                select(Letter.id, Letter.closed_at, Letter.erase_names_after_days).where(
                    Letter.status == LetterStatus.closed,
                    col(Letter.erase_names_after_days).is_not(None),
                    col(Letter.names_erased_at).is_(None),
                    col(Letter.closed_at).is_not(None),
                )
            )
        ).all()
        await session.rollback()
    return [
        letter_id
        for letter_id, closed_at, days in candidates
        # Both are set: the query asked for them.
        if closed_at is not None
        and days is not None
        and closed_at + timedelta(days=max(days, 0)) <= now
    ]


async def erase_names(
    session: AsyncSession, letter_id: int, now: datetime
) -> tuple[int, int] | None:
    """Erase every name and title of a letter, in the caller's transaction.

    Returns (signature rows changed, ledger entries blanked), or None if the letter's
    names were already erased. Counts do not move: a signature that showed its name is
    still counted as named, and the public pages say when the names were erased. Pending
    signatures of the letter (which hold names as typed) are deleted; a closed letter
    cannot confirm them anyway.
    """
    marked = await session.exec(
        update(Letter)
        .where(col(Letter.id) == letter_id, col(Letter.names_erased_at).is_(None))
        .values(names_erased_at=now, updated_at=now)
    )
    if marked.rowcount != 1:
        return None
    rows = await session.exec(
        update(Signature)
        .where(
            col(Signature.letter_id) == letter_id,
            or_(
                col(Signature.name) != "",
                col(Signature.title) != "",
                col(Signature.sealed_name) != "",
                col(Signature.reveal_at).is_not(None),
            ),
        )
        .values(name="", title="", sealed_name="", reveal_at=None)
    )
    entries = await ledger.redact_names(session, letter_id, None)
    await session.exec(delete(PendingSignature).where(col(PendingSignature.letter_id) == letter_id))
    return int(rows.rowcount or 0), entries
