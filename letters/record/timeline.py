"""What happened to a letter, as the public may follow it: publication, new versions with
their notes, milestones of the count, deliveries, replies and outcomes, and closing.

Read from the rows that record each of them (never from drafts). Each event has an anchor
that stays the same for ever, which the history page shows it under and the feeds use
as its id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from letters.models import Letter, LetterStatus, LetterVersion, Milestone
from letters.record.public import (
    PUBLIC_STATUSES,
    PublicDelivery,
    PublicFollowUp,
    deliveries,
    follow_ups,
)


@dataclass(frozen=True)
class Event:
    kind: str  # published, revised, milestone, goal, delivered, reply, outcome, closed
    at: datetime  # when it happened on this site
    anchor: str  # stable within the letter: "version-2", "delivery-41", "reply-3"…
    number: int = 0  # the version, the count reached, the signatures delivered
    note: str = ""  # a version's note
    delivery: PublicDelivery | None = None
    follow_up: PublicFollowUp | None = None


async def letter_events(
    session: AsyncSession,
    letter: Letter,
    delivered: Sequence[PublicDelivery],
    followed: Sequence[PublicFollowUp],
) -> list[Event]:
    """Every event of a public letter, newest first."""
    if letter.status == LetterStatus.draft:
        return []
    events = [Event("published", letter.published_at or letter.created_at, "published")]
    versions = await session.exec(
        select(LetterVersion.number, LetterVersion.note, LetterVersion.created_at)
        .where(LetterVersion.letter_id == letter.id, col(LetterVersion.number) > 1)
        .order_by(col(LetterVersion.number))
    )
    for number, note, at in versions.all():
        events.append(Event("revised", at, f"version-{number}", number=number, note=note))
    milestones = await session.exec(
        select(Milestone.threshold, Milestone.reached_at).where(Milestone.letter_id == letter.id)
    )
    for threshold, at in milestones.all():
        kind = "goal" if threshold == letter.goal else "milestone"
        events.append(Event(kind, at, f"count-{threshold}", number=threshold))
    for item in delivered:
        events.append(
            Event(
                "delivered",
                item.recorded_at,
                f"delivery-{item.ledger_seq}",
                number=item.verified_count,
                delivery=item,
            )
        )
    for follow_up in followed:
        events.append(
            Event(
                follow_up.kind,
                follow_up.recorded_at,
                f"{follow_up.kind}-{follow_up.id}",
                follow_up=follow_up,
            )
        )
    if letter.status == LetterStatus.closed and letter.closed_at is not None:
        events.append(
            Event("closed", letter.closed_at, f"closed-{int(letter.closed_at.timestamp())}")
        )
    return sorted(events, key=lambda event: (event.at, event.anchor), reverse=True)


async def site_events(session: AsyncSession, limit: int) -> list[tuple[Letter, Event]]:
    """The newest events of the public letters, newest first, at most `limit`.

    Events are read from the `limit` letters that changed last (each event moves its
    letter's `updated_at`, and so do signatures): on a site with more letters than that,
    an event of a quieter letter may wait until the busy ones have fewer events.
    """
    letters = await session.exec(
        select(Letter)
        .where(col(Letter.status).in_(PUBLIC_STATUSES))
        .order_by(col(Letter.updated_at).desc(), col(Letter.id).desc())
        .limit(limit)
    )
    found: list[tuple[Letter, Event]] = []
    for letter in letters.all():
        events = await letter_events(
            session, letter, await deliveries(session, letter), await follow_ups(session, letter)
        )
        found.extend((letter, event) for event in events)
    found.sort(key=lambda pair: (pair[1].at, pair[0].id, pair[1].anchor), reverse=True)
    return found[:limit]
