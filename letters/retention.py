"""Deleting what is no longer needed: expired magic links and old rate-limit counts.

A pending signature holds what someone typed (a name, perhaps for somebody else's
address); once its link has expired it serves nothing, so it goes. Rate-limit rows go when
their window is over. Senders run this between sending (see letters.outbox.Sender and
`letters worker`), so nothing piles up even if no one schedules a job.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from letters.models import PendingSignature, RateLimitHit, utcnow


@dataclass(frozen=True)
class Purged:
    pending_signatures: int
    rate_limit_rows: int


async def purge_expired(
    maker: async_sessionmaker[AsyncSession], now: datetime | None = None
) -> Purged:
    """Delete expired pending signatures and rate-limit rows; `maker` must open writers."""
    now = now or utcnow()
    async with maker() as session:
        pending = await session.exec(  # type: ignore[call-overload]
            delete(PendingSignature).where(col(PendingSignature.expires_at) < now)
        )
        limits = await session.exec(  # type: ignore[call-overload]
            delete(RateLimitHit).where(col(RateLimitHit.expires_at) < now)
        )
        await session.commit()
    return Purged(pending.rowcount, limits.rowcount)
