"""Rate limits kept in the database, so every worker process and host shares them.

Fixed windows: one row per (key, window) counted with an atomic upsert. Keys are keyed
hashes, never a raw address or IP. The caller runs `hit()` inside its own transaction and
rolls back when `RateLimited` is raised, so a refused request changes nothing.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from letters.db import dialect_insert, table_of
from letters.models import RateLimitHit


@dataclass(frozen=True)
class Limit:
    key: str  # already hashed
    max_hits: int


class RateLimited(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__(f"rate limited; retry after {retry_after}s")
        self.retry_after = retry_after


def ip_prefix(host: str | None) -> str:
    """The client's IPv4 address, or its IPv6 /64 (one household or office network)."""
    if not host:
        return "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


async def hit(session: AsyncSession, limits: list[Limit], window: int, now: datetime) -> None:
    """Count one request against each limit; raise `RateLimited` if any is exceeded."""
    epoch = int(now.timestamp())
    window_start = epoch - epoch % window
    expires_at = datetime.fromtimestamp(window_start + window, tz=now.tzinfo) + timedelta(seconds=1)
    insert = dialect_insert(session)
    for limit in limits:
        table = table_of(RateLimitHit)
        statement = (
            insert(table)
            .values(key=limit.key, window_start=window_start, hits=1, expires_at=expires_at)
            .on_conflict_do_update(
                index_elements=[table.c.key, table.c.window_start],
                set_={"hits": table.c.hits + 1},
            )
            .returning(table.c.hits)
        )
        hits = (await session.exec(statement)).scalar_one()
        if hits > limit.max_hits:
            retry_after = max(1, math.ceil(window_start + window - now.timestamp()))
            raise RateLimited(retry_after)
