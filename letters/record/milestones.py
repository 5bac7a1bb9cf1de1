"""Milestones: the authors get an email when a letter passes 100, 250, 500, 1,000, 2,500...
verified signatures, and when it reaches its goal; once each.

`check` runs inside the transaction that counts a signature (letters.signing.confirm), after
the letter's row was updated and so locked. The decision is a row in `milestone` inserted
with ON CONFLICT DO NOTHING: of any number of concurrent confirmations, only the one whose
count hit the number inserts it, and a count that falls back and rises again finds the row
already there. The emails go through the outbox in the same transaction.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from letters.db import dialect_insert, table_of
from letters.mail import compose
from letters.models import Letter, Milestone
from letters.settings import Settings


def is_round(count: int) -> bool:
    """100, 250, 500, 1000, 2500, 5000, 10000, 25000..."""
    if count < 100:
        return False
    unit = 10 ** (len(str(count)) - 1)
    return count in (unit, unit * 5 // 2, unit * 5)


async def check(
    session: AsyncSession,
    letter_id: int,
    settings: Settings,
    now: datetime,
    letter: Letter | None = None,
) -> list[int]:
    """Queue the milestone email if this count is one; returns the queued emails' ids.

    `letter` is the letter's row as the caller's transaction counted it, if it has it
    (signing.confirm does): then nothing is read unless its count is a milestone.
    """
    if letter is not None:
        verified, goal, title, slug = letter.verified_count, letter.goal, letter.title, letter.slug
    else:
        verified, goal, title, slug = (
            await session.exec(
                select(Letter.verified_count, Letter.goal, Letter.title, Letter.slug).where(
                    Letter.id == letter_id
                )
            )
        ).one()
    reached_goal = goal is not None and verified == goal
    if not (reached_goal or is_round(verified)):
        return []
    table = table_of(Milestone)
    inserted = (
        await session.exec(
            dialect_insert(session)(table)
            .values(letter_id=letter_id, threshold=verified, reached_at=now)
            .on_conflict_do_nothing(index_elements=[table.c.letter_id, table.c.threshold])
            .returning(table.c.id)
        )
    ).scalar_one_or_none()
    if inserted is None:
        return []
    context = {
        "title": title,
        "count": verified,
        "goal": goal,
        "reached_goal": reached_goal,
        "letter_url": f"{settings.base_url}/letters/{slug}",
        "manage_url": f"{settings.base_url}/authors/letters/{slug}",
    }
    return await compose.to_authors(session, settings.keys, letter_id, "milestone", context)
