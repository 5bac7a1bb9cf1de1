"""The audit log of a letter: what each author did, for the letter's authors to read."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Self

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from letters.i18n import N_
from letters.models import AuditEntry, Author, utcnow


class Labelled(StrEnum):
    """A code kept in the database, whose member carries its label for people (marked with
    `N_`, translated where shown): `spam = "spam", N_("Spam or abuse")`."""

    label: str

    def __new__(cls, value: str, label: str) -> Self:
        member = str.__new__(cls, value)
        member._value_ = value
        member.label = label
        return member


class Action(Labelled):
    """What an author did to a letter, as its log says it."""

    created = "created", N_("Started the draft")
    edited = "edited", N_("Edited the draft")
    published = "published", N_("Published the letter")
    revised = "revised", N_("Published a new version")
    closed = "closed", N_("Closed the letter")
    reopened = "reopened", N_("Reopened the letter")
    settings = "settings", N_("Changed the settings")
    invited = "invited", N_("Added a co-author")
    removed_author = "removed_author", N_("Removed a co-author")
    joined = "joined", N_("Joined as an admin")
    hid_name = "hid_name", N_("Hid a signer's name")
    invalidated = "invalidated", N_("Invalidated a signature")
    delivered = "delivered", N_("Delivered the letter")
    reply = "reply", N_("Published the recipient's reply")
    outcome = "outcome", N_("Published an outcome")
    founding_opened = "founding_opened", N_("Opened a founding round")
    founding_link = "founding_link", N_("Replaced the founding round's link")
    founding_closed = "founding_closed", N_("Closed the founding round (its signatures discarded)")
    launch_planned = "launch_planned", N_("Planned the launch")
    launched = "launched", N_("Launched the letter")


LABELS = {action: action.label for action in Action}

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
