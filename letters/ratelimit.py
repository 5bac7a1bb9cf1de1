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

from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError
from sqlmodel.ext.asyncio.session import AsyncSession

from letters.db import dialect_insert, table_of
from letters.models import RateLimitHit

# The most an INTEGER counter holds: a key counted, never refused.
UNCAPPED = 2**31 - 1


# Keys of these kinds are counted by many people at once (an office behind one IP address,
# a company's domain on the day its letter goes viral): on PostgreSQL a sign request
# counts them in one of SHARDS rows, so that concurrent requests seldom wait for the same
# row, and checks the sum of all of them (`row_keys`). The sum is read in the statement
# that counts, so it can miss the increments of requests still running: a shared limit,
# always a generous one, may be passed by as many requests as run at that moment. Limits
# per person are one row each, and exact.
SHARED = ("ip:", "dom:", "flood:")
SHARDS = 8


@dataclass(frozen=True)
class Limit:
    key: str  # already hashed
    max_hits: int

    @property
    def shared(self) -> bool:
        return self.key.startswith(SHARED)


def row_keys(key: str) -> list[str]:
    """Every row a limit's count may be kept in: its own, then its shards'."""
    return [key, *(f"{key}#{shard}" for shard in range(SHARDS))]


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
    for limit in limits:
        if limit.shared and limit.max_hits < UNCAPPED:
            # What sign requests counted in this limit's shards (PostgreSQL) counts too.
            shards = select(func.coalesce(func.sum(table.c.hits), 0)).where(
                table.c.key.in_(row_keys(limit.key)[1:]), table.c.window_start == window_start
            )
            counted[limit.key] += (await connection.execute(shards)).scalar_one()
    if any(counted[limit.key] > limit.max_hits for limit in limits):
        retry_after = max(1, math.ceil(window_start + window - now.timestamp()))
        raise RateLimited(retry_after)


# What the guard of a statement counting limits at once says when one is exceeded.
REFUSED = "letters: rate limited"
# PostgreSQL: every limit counted in one statement, in key order, and whether any is now
# exceeded (`refused`): a shared limit in the shard `at_once_params` chose, checked with
# its other rows added (`others`). A statement built on it ends with the guard
# `CAST(CASE WHEN EXISTS (SELECT 1 FROM refused) THEN :refused ELSE '0' END AS integer)`,
# which fails on purpose when a limit is exceeded and so undoes the whole statement: a
# refused request counts nothing. The limits' rows are counted after the CTE named AFTER
# has written its rows, so they are held only for the rest of the statement and its
# commit. Parameters: `at_once_params()`.
LIMITS_AT_ONCE = """
limits AS (
    SELECT key, max_hits, base
    FROM unnest(CAST(:keys AS text[]), CAST(:maxes AS integer[]), CAST(:bases AS text[]))
        AS l(key, max_hits, base)
), counted_hits AS (
    INSERT INTO rate_limit_hit (key, window_start, hits, expires_at)
    SELECT key, :window_start, 1, :expires_at FROM limits
    WHERE EXISTS (SELECT 1 FROM AFTER)
    ORDER BY key
    ON CONFLICT (key, window_start) DO UPDATE SET hits = rate_limit_hit.hits + 1
    RETURNING key, hits
), others AS (
    SELECT row.base, sum(counted.hits) AS hits
    FROM unnest(CAST(:other_keys AS text[]), CAST(:other_bases AS text[])) AS row(key, base)
    JOIN rate_limit_hit AS counted
        ON counted.key = row.key AND counted.window_start = :window_start
    GROUP BY row.base
), refused AS (
    SELECT 1 FROM counted_hits JOIN limits USING (key) LEFT JOIN others USING (base)
    WHERE counted_hits.hits + coalesce(others.hits, 0) > limits.max_hits
)"""
GUARD = "CAST(CASE WHEN EXISTS (SELECT 1 FROM refused) THEN :refused ELSE '0' END AS integer)"


def at_once_params(
    limits: list[Limit], window: int, now: datetime, shard: int = 0
) -> dict[str, object]:
    """The parameters of LIMITS_AT_ONCE; shared limits are counted in shard `shard`."""
    epoch = int(now.timestamp())
    window_start = epoch - epoch % window
    expires_at = datetime.fromtimestamp(window_start + window, tz=now.tzinfo) + timedelta(seconds=1)
    maxes: dict[str, int] = {}
    for limit in limits:
        maxes[limit.key] = min(limit.max_hits, maxes.get(limit.key, limit.max_hits))
    keys, other_keys, other_bases = [], [], []
    for key, max_hits in maxes.items():
        if not Limit(key, max_hits).shared:
            keys.append(key)
            continue
        rows = row_keys(key)
        own = rows[1 + shard % SHARDS]
        keys.append(own)
        if max_hits < UNCAPPED:  # only what can be refused needs the other rows
            others = [row for row in rows if row != own]
            other_keys += others
            other_bases += [key] * len(others)
    return {
        "keys": keys,
        "maxes": list(maxes.values()),
        "bases": list(maxes),
        "other_keys": other_keys,
        "other_bases": other_bases,
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
