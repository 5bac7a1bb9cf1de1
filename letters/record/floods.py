"""A flood of sign requests for one company cannot silence it.

Anyone can ask for sign links for made-up addresses at a company's domain. A fixed cap per
domain would let a few dozen IP addresses use it up and lock every employee out for the
hour, while the company's mail server takes the flood. Instead the domain's sign requests
in the window are compared with what its real signers do: a domain whose requests pass
`LIMIT_PER_DOMAIN` plus `CONFIRMED_CREDIT` for each signature its organization confirmed
today is *flooded*, and while it is, each IP address (or IPv6 /64) may ask for only
`FLOODED_PER_IP` links to that domain per window. An attacker's fifty addresses then send
a few hundred emails instead of tens of thousands, and a real signer, from their own
address, still gets their link. An office behind one IP address is only held to that
while the flood lasts; a viral day, whose requests are confirmed, never counts as one.

The state is read at most once every `FRESH_SECONDS` per domain and process (one short
read of two counters), so the hot path pays nothing for it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime

import sqlmodel
from sqlalchemy import func, select
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from letters.models import DailyCount, RateLimitHit
from letters.ratelimit import Limit
from letters.tokens import Signer

CONFIRMED_CREDIT = 4
FLOODED_PER_IP = 3
FRESH_SECONDS = 2.0


@dataclass
class _Domain:
    fresh_until: float
    threshold: int
    requests: int  # the domain's requests in the window, as read, plus this process's since


@dataclass
class FloodWatch:
    """Per process: each domain's requests and threshold, as last read.

    Between reads it counts the requests this process lets through, so a flood is noticed
    at once here and within `FRESH_SECONDS` in every other process.
    """

    _domains: dict[tuple[int, str], _Domain] = field(default_factory=dict)

    async def limits(
        self,
        session: AsyncSession,
        *,
        letter_id: int,
        domain_key: str,
        organization: str,
        ip_domain_key: str,
        per_domain: int,
        window: int,
        now: datetime,
    ) -> list[Limit]:
        """The extra limit a sign request for this domain gets: none unless it is flooded.

        Uses `session` for one read when the last one is stale, and ends that read.
        """
        key = (letter_id, domain_key)
        domain = self._domains.get(key)
        if domain is None or domain.fresh_until < time.monotonic():
            requests, confirmed = await _counts(
                session, letter_id, domain_key, organization, window, now
            )
            await session.commit()
            if len(self._domains) > 4096:
                self._domains.clear()
            domain = _Domain(
                fresh_until=time.monotonic() + FRESH_SECONDS,
                threshold=per_domain + CONFIRMED_CREDIT * confirmed,
                requests=requests,
            )
            self._domains[key] = domain
        domain.requests += 1
        if domain.requests <= domain.threshold:
            return []
        return [Limit("flood:" + ip_domain_key, FLOODED_PER_IP)]

    def confirmed(self, letter_id: int, domain_key: str) -> None:
        """A signature from this domain was confirmed here: credit it before the next read."""
        domain = self._domains.get((letter_id, domain_key))
        if domain is not None:
            domain.threshold += CONFIRMED_CREDIT


def domain_key(signer: Signer, domain: str) -> str:
    """The rate-limit key counting a domain's sign requests (a keyed hash of the domain)."""
    return "dom:" + signer.key_hash("domain", domain)


async def _counts(
    session: AsyncSession,
    letter_id: int,
    domain_key: str,
    organization: str,
    window: int,
    now: datetime,
) -> tuple[int, int]:
    """The domain's sign requests in this window, and its organization's confirmed today."""
    epoch = int(now.timestamp())
    requests = (
        select(func.coalesce(func.max(col(RateLimitHit.hits)), 0))
        .where(
            col(RateLimitHit.key) == domain_key,
            col(RateLimitHit.window_start) == epoch - epoch % window,
        )
        .scalar_subquery()
    )
    confirmed = (
        select(func.coalesce(func.max(col(DailyCount.count)), 0))
        .where(
            col(DailyCount.letter_id) == letter_id,
            col(DailyCount.day) == now.date().isoformat(),
            col(DailyCount.organization) == organization,
        )
        .scalar_subquery()
    )
    row = (await session.exec(sqlmodel.select(requests, confirmed))).one()
    return int(row[0]), int(row[1])
