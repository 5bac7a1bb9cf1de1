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

from sqlalchemy.exc import DBAPIError
from sqlmodel.ext.asyncio.session import AsyncSession

from letters.db import dialect_insert, table_of
from letters.models import RateLimitHit
from letters.tokens import Signer

# The most an INTEGER counter holds: a key counted, never refused.
UNCAPPED = 2**31 - 1


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


def ip_key(signer: Signer, host: str | None) -> str:
    """A client's network (`ip_prefix`) as every per-IP limit names it: a keyed hash."""
    return signer.key_hash("ip", ip_prefix(host))


async def hit(session: AsyncSession, limits: list[Limit], window: int, now: datetime) -> None:
    """Count one request against each limit, in one statement; raise `RateLimited` if any
    is exceeded (the caller then rolls back, so a refused request counts nothing)."""
    epoch = int(now.timestamp())
    window_start = epoch - epoch % window
    expires_at = datetime.fromtimestamp(window_start + window, tz=now.tzinfo) + timedelta(seconds=1)
    table = table_of(RateLimitHit)
    # In key order: two requests counting the same keys lock their rows in the same order.
    rows = [
        {"key": key, "window_start": window_start, "hits": 1, "expires_at": expires_at}
        for key in sorted({limit.key for limit in limits})
    ]
    statement = dialect_insert(session)(table).values(rows)
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.key, table.c.window_start],
        set_={"hits": table.c.hits + 1},
    ).returning(table.c.key, table.c.hits)
    connection = await session.connection()
    counted = {key: hits for key, hits in (await connection.execute(statement)).all()}
    if any(counted[limit.key] > limit.max_hits for limit in limits):
        retry_after = max(1, math.ceil(window_start + window - now.timestamp()))
        raise RateLimited(retry_after)


# What the guard of a statement counting limits at once says when one is exceeded.
REFUSED = "letters: rate limited"
# PostgreSQL: every limit counted in one statement, in key order, and whether any is now
# exceeded (`refused`). A statement built on it ends with the guard
# `CAST(CASE WHEN EXISTS (SELECT 1 FROM refused) THEN :refused ELSE '0' END AS integer)`,
# which fails on purpose when a limit is exceeded and so undoes the whole statement: a
# refused request counts nothing. The limits' rows (one per IP or domain is shared by a
# whole office) are counted after the CTE named AFTER has written its rows, so they are
# held only for the rest of the statement and its commit. Parameters: `at_once_params()`.
LIMITS_AT_ONCE = """
limits AS (
    SELECT key, max_hits
    FROM unnest(CAST(:keys AS text[]), CAST(:maxes AS integer[])) AS l(key, max_hits)
), counted_hits AS (
    INSERT INTO rate_limit_hit (key, window_start, hits, expires_at)
    SELECT key, :window_start, 1, :expires_at FROM limits
    WHERE EXISTS (SELECT 1 FROM AFTER)
    ORDER BY key
    ON CONFLICT (key, window_start) DO UPDATE SET hits = rate_limit_hit.hits + 1
    RETURNING key, hits
), refused AS (
    SELECT 1 FROM counted_hits JOIN limits USING (key)
    WHERE counted_hits.hits > limits.max_hits
)"""
GUARD = "CAST(CASE WHEN EXISTS (SELECT 1 FROM refused) THEN :refused ELSE '0' END AS integer)"


def at_once_params(limits: list[Limit], window: int, now: datetime) -> dict[str, object]:
    epoch = int(now.timestamp())
    window_start = epoch - epoch % window
    expires_at = datetime.fromtimestamp(window_start + window, tz=now.tzinfo) + timedelta(seconds=1)
    maxes: dict[str, int] = {}
    for limit in limits:
        maxes[limit.key] = min(limit.max_hits, maxes.get(limit.key, limit.max_hits))
    return {
        "keys": list(maxes),
        "maxes": list(maxes.values()),
        "window_start": window_start,
        "expires_at": expires_at,
        "refused": REFUSED,
    }


def refused(error: DBAPIError, window: int, now: datetime) -> RateLimited | None:
    """The RateLimited a statement's guard stood for, or None if it failed otherwise."""
    if REFUSED not in str(error.orig):
        return None
    epoch = now.timestamp()
    return RateLimited(max(1, math.ceil(epoch - epoch % window + window - epoch)))
