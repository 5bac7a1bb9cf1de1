"""What anyone may read: published and closed letters, their counts and the names shown.

Every query here filters out drafts and hidden signatures; nothing else in the package
reads signatures for public display.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from letters.models import (
    SLUG_PATTERN,
    AllowedDomain,
    DailyCount,
    Delivery,
    DeliveryMethod,
    FollowUp,
    Letter,
    LetterStatus,
    OrganizationCount,
    Signature,
)

PUBLIC_STATUSES = (LetterStatus.published, LetterStatus.closed)


class LetterNotFound(Exception):
    """No such letter, or a draft (which is invisible to the public)."""


@dataclass(frozen=True)
class Waiting:
    """Hidden names of one organization to be shown together once it reaches `threshold`."""

    organization: str
    threshold: int
    names: int


@dataclass(frozen=True)
class Tally:
    verified: int
    named: int
    hidden: int
    organizations: list[tuple[str, int]]  # largest first
    updated_at: datetime
    waiting: Sequence[Waiting] = ()  # by organization, then threshold


@dataclass(frozen=True)
class PublicDelivery:
    """A delivery as the public sees it: never the address or who recorded it."""

    recipient: str
    method: str  # DeliveryMethod
    delivered_on: str  # YYYY-MM-DD
    version: int
    verified_count: int
    ledger_seq: int
    digest: str
    recorded_at: datetime
    # By email: "sending" until the mail server accepts it, then "sent" (or "failed").
    state: str = ""


@dataclass(frozen=True)
class PublicFollowUp:
    kind: str  # FollowUpKind
    happened_on: str  # YYYY-MM-DD
    source: str
    text: str  # Markdown
    recorded_at: datetime
    id: int = 0


@dataclass(frozen=True)
class LetterSnapshot:
    """Everything a public page shows of a letter, read together and shared read-only."""

    letter: Letter
    tally: Tally
    names: Sequence[Signature]  # the first page of shown names
    more_names: bool
    domains: Sequence[AllowedDomain]
    # Verified signatures per version of the text, newest first (empty for one version).
    per_version: list[tuple[int, int]] = field(default_factory=list)
    # Deliveries, and replies and outcomes, oldest first.
    deliveries: Sequence[PublicDelivery] = ()
    follow_ups: Sequence[PublicFollowUp] = ()


async def load_snapshot(session: AsyncSession, slug: str, names: int) -> LetterSnapshot:
    letter = await get_public_letter(session, slug)
    counts = await tally(session, letter)
    first_names, next_id = await named_signatures(session, letter, None, names)
    domains = await allowed_domains(session, letter)
    per_version = await signed_per_version(session, letter) if letter.version > 1 else []
    return LetterSnapshot(
        letter,
        counts,
        first_names,
        next_id is not None,
        domains,
        per_version,
        await deliveries(session, letter),
        await follow_ups(session, letter),
    )


def _state(row: Delivery) -> str:
    if row.method != DeliveryMethod.email:
        return ""
    if row.failed_at is not None:
        return "failed"
    return "sent" if row.sent_at is not None else "sending"


async def deliveries(session: AsyncSession, letter: Letter) -> list[PublicDelivery]:
    """The letter's deliveries, oldest first, with only what is public."""
    rows = await session.exec(
        select(Delivery).where(Delivery.letter_id == letter.id).order_by(col(Delivery.id))
    )
    return [
        PublicDelivery(
            recipient=row.recipient,
            method=row.method,
            delivered_on=row.delivered_on,
            version=row.letter_version,
            verified_count=row.verified_count,
            ledger_seq=row.ledger_seq,
            digest=row.digest,
            recorded_at=row.created_at,
            state=_state(row),
        )
        for row in rows.all()
    ]


async def delivered_snapshot(session: AsyncSession, letter: Letter, seq: int) -> str | None:
    """The signed snapshot delivered with ledger entry `seq`, as it was attached."""
    statement = select(Delivery.snapshot).where(
        Delivery.letter_id == letter.id, Delivery.ledger_seq == seq
    )
    return (await session.exec(statement)).first()


async def follow_ups(session: AsyncSession, letter: Letter) -> list[PublicFollowUp]:
    """Replies and outcomes the authors published, in the order they happened."""
    rows = await session.exec(
        select(FollowUp)
        .where(FollowUp.letter_id == letter.id)
        .order_by(col(FollowUp.happened_on), col(FollowUp.id))
    )
    return [
        PublicFollowUp(row.kind, row.happened_on, row.source, row.text, row.created_at, row.id)
        for row in rows.all()
    ]


async def signed_per_version(session: AsyncSession, letter: Letter) -> list[tuple[int, int]]:
    """How many verified signatures confirmed each version of the text, newest first."""
    rows = await session.exec(
        select(Signature.letter_version, func.count())
        .where(Signature.letter_id == letter.id)
        .group_by(col(Signature.letter_version))
    )
    counted = dict(rows.all())
    return [(number, counted.get(number, 0)) for number in range(letter.version, 0, -1)]


async def get_public_letter(session: AsyncSession, slug: str) -> Letter:
    if not SLUG_PATTERN.match(slug):  # also keeps NUL bytes away from PostgreSQL
        raise LetterNotFound
    letter = (await session.exec(select(Letter).where(Letter.slug == slug))).first()
    if letter is None or letter.status not in PUBLIC_STATUSES:
        raise LetterNotFound
    return letter


async def letter_id(session: AsyncSession, slug: str) -> int | None:
    """The id of the letter at `slug`, whatever its status (for authors' pages)."""
    if not SLUG_PATTERN.match(slug):
        return None
    return (await session.exec(select(Letter.id).where(Letter.slug == slug))).first()


async def list_public_letters(session: AsyncSession) -> Sequence[Letter]:
    statement = (
        select(Letter)
        .where(col(Letter.status).in_(PUBLIC_STATUSES))
        .order_by(col(Letter.published_at).desc(), col(Letter.id).desc())
    )
    return (await session.exec(statement)).all()


async def allowed_domains(session: AsyncSession, letter: Letter) -> Sequence[AllowedDomain]:
    statement = (
        select(AllowedDomain)
        .where(AllowedDomain.letter_id == letter.id)
        .order_by(col(AllowedDomain.organization), col(AllowedDomain.domain))
    )
    return (await session.exec(statement)).all()


async def tally(session: AsyncSession, letter: Letter) -> Tally:
    """The counts of a letter, read in one statement each from the counters."""
    rows = (
        await session.exec(
            select(OrganizationCount)
            .where(OrganizationCount.letter_id == letter.id, col(OrganizationCount.count) > 0)
            .order_by(col(OrganizationCount.count).desc(), col(OrganizationCount.organization))
        )
    ).all()
    return Tally(
        verified=letter.verified_count,
        named=letter.named_count,
        hidden=letter.hidden_count,
        organizations=[(row.organization, row.count) for row in rows],
        updated_at=letter.updated_at,
        waiting=await waiting_names(session, letter),
    )


async def waiting_names(session: AsyncSession, letter: Letter) -> list[Waiting]:
    """How many hidden names wait for each reveal threshold, per organization (no names)."""
    threshold = col(Signature.reveal_at)
    rows = (
        await session.exec(
            select(Signature.organization, threshold, func.count())
            .where(
                Signature.letter_id == letter.id,
                col(Signature.show_name).is_(False),
                threshold.is_not(None),
            )
            .group_by(col(Signature.organization), threshold)
            .order_by(col(Signature.organization), threshold)
        )
    ).all()
    return [Waiting(organization, int(at or 0), int(names)) for organization, at, names in rows]


async def named_signatures(
    session: AsyncSession, letter: Letter, after_id: int | None, limit: int
) -> tuple[Sequence[Signature], int | None]:
    """A page of verified signatures whose signers chose to show their name, oldest first.

    Returns the rows and the id to continue after, or None on the last page. Once the
    letter's names have been erased (letters.record.retention) there are none to list.
    """
    if letter.names_erased_at is not None:
        return [], None
    statement = select(Signature).where(
        Signature.letter_id == letter.id, col(Signature.show_name).is_(True)
    )
    if after_id is not None:
        statement = statement.where(col(Signature.id) > after_id)
    rows = (await session.exec(statement.order_by(col(Signature.id)).limit(limit + 1))).all()
    if len(rows) > limit:
        return rows[:limit], rows[limit - 1].id
    return rows, None


async def daily_counts(session: AsyncSession, letter: Letter) -> list[tuple[str, str, int]]:
    """(day, organization, verified that day), oldest day first."""
    rows = (
        await session.exec(
            select(DailyCount)
            .where(DailyCount.letter_id == letter.id, col(DailyCount.count) != 0)
            .order_by(col(DailyCount.day), col(DailyCount.organization))
        )
    ).all()
    return [(row.day, row.organization, row.count) for row in rows]
