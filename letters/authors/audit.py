"""The audit log of a letter: what each author did, for the letter's authors to read."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from letters.i18n import N_
from letters.models import AuditEntry, Author, utcnow


class Action(StrEnum):
    created = "created"
    edited = "edited"
    published = "published"
    revised = "revised"
    closed = "closed"
    reopened = "reopened"
    settings = "settings"
    invited = "invited"
    removed_author = "removed_author"
    joined = "joined"
    hid_name = "hid_name"
    invalidated = "invalidated"
    delivered = "delivered"
    reply = "reply"
    outcome = "outcome"
    founding_opened = "founding_opened"
    founding_link = "founding_link"
    founding_closed = "founding_closed"
    launch_planned = "launch_planned"
    launched = "launched"


LABELS = {
    Action.created: N_("Started the draft"),
    Action.edited: N_("Edited the draft"),
    Action.published: N_("Published the letter"),
    Action.revised: N_("Published a new version"),
    Action.closed: N_("Closed the letter"),
    Action.reopened: N_("Reopened the letter"),
    Action.settings: N_("Changed the settings"),
    Action.invited: N_("Added a co-author"),
    Action.removed_author: N_("Removed a co-author"),
    Action.joined: N_("Joined as an admin"),
    Action.hid_name: N_("Hid a signer's name"),
    Action.invalidated: N_("Invalidated a signature"),
    Action.delivered: N_("Delivered the letter"),
    Action.reply: N_("Published the recipient's reply"),
    Action.outcome: N_("Published an outcome"),
    Action.founding_opened: N_("Opened a founding round"),
    Action.founding_link: N_("Replaced the founding round's link"),
    Action.founding_closed: N_("Closed the founding round (its signatures discarded)"),
    Action.launch_planned: N_("Planned the launch"),
    Action.launched: N_("Launched the letter"),
}

MODERATION = (Action.hid_name, Action.invalidated)


async def record(
    session: AsyncSession,
    letter_id: int,
    author: Author,
    action: Action,
    *,
    organization: str = "",
    commitment: str = "",
    detail: str = "",
    now: datetime | None = None,
) -> None:
    """Add an entry in the caller's transaction."""
    session.add(
        AuditEntry(
            letter_id=letter_id,
            author_id=author.id,
            author_email=author.email,
            action=action,
            organization=organization,
            commitment=commitment,
            detail=detail[:500],
            created_at=now or utcnow(),
        )
    )
    await session.flush()


async def entries(
    session: AsyncSession, letter_id: int, moderation_only: bool = False, limit: int = 500
) -> Sequence[AuditEntry]:
    """The newest entries first."""
    statement = select(AuditEntry).where(AuditEntry.letter_id == letter_id)
    if moderation_only:
        statement = statement.where(col(AuditEntry.action).in_(MODERATION))
    statement = statement.order_by(col(AuditEntry.id).desc()).limit(limit)
    return (await session.exec(statement)).all()
