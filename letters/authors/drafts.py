"""A letter's life: start a draft, edit it, publish, close, reopen, change its settings.

Each function checks the author's part in the letter (letters.authors.access) inside the
transaction that writes, records what it did in the audit log, and commits; on any error
it rolls back, so a refused publish leaves the draft exactly as it was.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from letters.authors import audit
from letters.authors.access import Act, NotAllowed, require_creator
from letters.authors.letter_form import FormErrors, LetterDraft, LetterSettings, closes_on
from letters.i18n import N_, gettext
from letters.models import (
    AllowedDomain,
    Author,
    AuthorRole,
    Letter,
    LetterAuthor,
    LetterStatus,
    utcnow,
)
from letters.record import founding

SLUG_TAKEN = N_("Another letter already has this address. Choose another.")


def frozen_message() -> str:
    return gettext(
        "The text is frozen while the founding round is open: its signers sign what will be "
        "published. Close the round (its signatures are discarded) to edit the draft."
    )


class PublishRefused(Exception):
    """The draft is not ready; `problems` says what to fix (field -> message)."""

    def __init__(self, problems: dict[str, str]) -> None:
        super().__init__(", ".join(problems))
        self.problems = problems


class EditConflict(Exception):
    """Someone else saved the letter after this form was opened."""


async def domains_of(session: AsyncSession, letter_id: int) -> Sequence[AllowedDomain]:
    statement = (
        select(AllowedDomain)
        .where(AllowedDomain.letter_id == letter_id)
        .order_by(col(AllowedDomain.organization), col(AllowedDomain.domain))
    )
    return (await session.exec(statement)).all()


async def _slug_free(session: AsyncSession, slug: str, letter_id: int | None) -> None:
    other = (await session.exec(select(Letter.id).where(Letter.slug == slug))).first()
    if other is not None and other != letter_id:
        raise FormErrors({"slug": gettext(SLUG_TAKEN)})


async def _replace_domains(session: AsyncSession, letter_id: int, draft: LetterDraft) -> None:
    await session.exec(delete(AllowedDomain).where(col(AllowedDomain.letter_id) == letter_id))
    for spec in draft.domains:
        session.add(spec.rule(letter_id))


async def _commit_or_slug_taken(session: AsyncSession) -> None:
    try:
        await session.commit()
    except IntegrityError:  # another letter took the slug between the check and the write
        await session.rollback()
        raise FormErrors({"slug": gettext(SLUG_TAKEN)}) from None


async def create_draft(
    session: AsyncSession, author: Author, draft: LetterDraft, now: datetime | None = None
) -> Letter:
    """Start a letter; its author owns it. Raises NotAllowed or FormErrors."""
    now = now or utcnow()
    require_creator(author)
    await _slug_free(session, draft.slug, None)
    letter = Letter(slug=draft.slug, title=draft.title, body=draft.body, created_at=now)
    _write(letter, draft, now)  # a new letter is a draft, the model's default status
    session.add(letter)
    try:
        await session.flush()
    except IntegrityError:
        await session.rollback()
        raise FormErrors({"slug": gettext(SLUG_TAKEN)}) from None
    assert letter.id is not None
    session.add(LetterAuthor(letter_id=letter.id, author_id=author.id, role=AuthorRole.owner))
    await _replace_domains(session, letter.id, draft)
    await audit.record(session, letter.id, author, audit.Action.created, now=now)
    await _commit_or_slug_taken(session)
    return letter


def _write(letter: Letter, draft: LetterDraft, now: datetime) -> None:
    """Put the draft's text and settings in the letter (its domains are rows of their own)."""
    letter.slug = draft.slug
    letter.title = draft.title
    letter.body = draft.body
    letter.ask_title = draft.ask_title
    letter.language = draft.language
    letter.goal = draft.goal
    letter.closes_at = draft.closes_at
    letter.updated_at = now


def stamp(letter: Letter) -> str:
    """Identifies the saved state of a letter, to notice edits made by someone else."""
    return f"{letter.version}:{letter.updated_at.isoformat()}"


async def save_draft(
    session: AsyncSession, act: Act, draft: LetterDraft, loaded: str | None = None
) -> Letter:
    """Save a draft in place (drafts have no versions yet).

    `loaded` is the `stamp()` of the letter when the form was opened: if someone saved
    since, raises EditConflict and writes nothing. Raises NotAllowed once published.
    """
    letter = (await act.access(session)).letter
    if letter.status != LetterStatus.draft:
        raise NotAllowed(
            gettext("This letter is published: its text changes only by a new version.")
        )
    if loaded and loaded != stamp(letter):
        raise EditConflict
    assert letter.id is not None
    if founding.is_open(await founding.round_of(session, letter.id)):
        raise NotAllowed(frozen_message())
    if draft.slug != letter.slug:
        await _slug_free(session, draft.slug, letter.id)
    _write(letter, draft, act.now)
    session.add(letter)
    await _replace_domains(session, letter.id, draft)
    await audit.record(session, letter.id, act.author, audit.Action.edited, now=act.now)
    await _commit_or_slug_taken(session)
    return letter


def readiness(letter: Letter, domains: Sequence[AllowedDomain], now: datetime) -> dict[str, str]:
    """What a draft still needs before it can be published (empty when ready)."""
    problems: dict[str, str] = {}
    if not letter.body.strip():
        problems["body"] = gettext("Write the letter's text.")
    if not domains:
        problems["domains"] = gettext("Add at least one company domain whose staff may sign.")
    if letter.closes_at is not None and letter.closes_at <= now:
        problems["closes_on"] = gettext(
            "The closing date has passed: choose a later one or remove it."
        )
    return problems


async def publish(session: AsyncSession, act: Act) -> Letter:
    """Make a draft public as version 1. Raises PublishRefused (nothing changes) or NotAllowed."""
    letter = (await act.access(session)).letter
    if letter.status != LetterStatus.draft:
        raise NotAllowed(gettext("This letter is already published."))
    assert letter.id is not None
    if founding.is_open(await founding.round_of(session, letter.id)):
        raise NotAllowed(
            gettext("This draft has a founding round: launch it from the founding round page.")
        )
    problems = readiness(letter, await domains_of(session, letter.id), act.now)
    if problems:
        await session.rollback()
        raise PublishRefused(problems)
    if not await founding.publish_draft(session, letter.id, act.now, act.author.id):
        await session.rollback()  # another author published it a moment ago
        raise NotAllowed(gettext("This letter is already published."))
    await audit.record(session, letter.id, act.author, audit.Action.published, now=act.now)
    await session.commit()
    return letter


async def close(session: AsyncSession, act: Act) -> Letter:
    """Stop new signatures; the letter and its counts stay public."""
    letter = (await act.access(session)).letter
    refusal = gettext("Only a published letter can be closed.")
    return await _move(session, act, letter, LetterStatus.published, refusal)


async def reopen(session: AsyncSession, act: Act) -> Letter:
    """Take signatures again after closing, unless the closing date has passed."""
    letter = (await act.access(session)).letter
    if letter.status == LetterStatus.closed and letter.closes_at and letter.closes_at <= act.now:
        await session.rollback()
        raise NotAllowed(
            gettext(
                "The closing date has passed. Set a later closing date (or none) in the "
                "settings, then reopen."
            )
        )
    refusal = gettext("Only a closed letter can be reopened.")
    return await _move(session, act, letter, LetterStatus.closed, refusal)


async def _move(
    session: AsyncSession, act: Act, letter: Letter, was: LetterStatus, refusal: str
) -> Letter:
    """Close a published letter (`was` published) or reopen a closed one, in one statement
    that also checks its status; NotAllowed(`refusal`) when it was not `was`. Commits."""
    closing = was == LetterStatus.published
    changed = await session.exec(
        update(Letter)
        .where(col(Letter.id) == letter.id, col(Letter.status) == was)
        .values(
            status=LetterStatus.closed if closing else LetterStatus.published,
            closed_at=act.now if closing else None,
            updated_at=act.now,
        )
    )
    if changed.rowcount != 1:
        await session.rollback()
        raise NotAllowed(refusal)
    action = audit.Action.closed if closing else audit.Action.reopened
    await audit.record(session, letter.id, act.author, action, now=act.now)
    await session.commit()
    return letter


async def change_settings(session: AsyncSession, act: Act, new: LetterSettings) -> Letter:
    """Goal, closing date, whether a job title is asked, and more domains.

    Once published, domains can be added but not removed or renamed: signatures were
    counted under their organizations.
    """
    letter = (await act.access(session)).letter
    assert letter.id is not None
    existing = {rule.domain for rule in await domains_of(session, letter.id)}
    errors = {}
    for index, spec in enumerate(new.domains):
        if spec.domain in existing:
            errors[f"domain-{index}"] = f"{spec.domain} is already allowed."
    if errors:
        await session.rollback()
        raise FormErrors(errors)
    changes = []
    if new.goal != letter.goal:
        changes.append(f"goal: {new.goal:,}" if new.goal else "no goal")
    if new.closes_at != letter.closes_at:
        changes.append(
            f"closes at the end of {closes_on(new.closes_at)} (UTC)"
            if new.closes_at
            else "no closing date"
        )
    if new.ask_title != letter.ask_title:
        changes.append("asks for a job title" if new.ask_title else "does not ask for a job title")
    for spec in new.domains:
        session.add(spec.rule(letter.id))
        changes.append(f"added {spec.domain} ({spec.organization})")
    letter.goal, letter.closes_at, letter.ask_title = new.goal, new.closes_at, new.ask_title
    letter.updated_at = act.now
    session.add(letter)
    if changes:
        detail = "; ".join(changes)
        await audit.record(
            session, letter.id, act.author, audit.Action.settings, detail=detail, now=act.now
        )
    await session.commit()
    return letter


async def close_due(session: AsyncSession, now: datetime | None = None) -> list[str]:
    """Close the published letters whose closing date has come. Commits; returns their slugs."""
    now = now or utcnow()
    closed = await session.exec(
        update(Letter)
        .where(
            col(Letter.status) == LetterStatus.published,
            col(Letter.closes_at).is_not(None),
            col(Letter.closes_at) <= now,
        )
        .values(status=LetterStatus.closed, closed_at=now, updated_at=now)
        .returning(col(Letter.slug))
    )
    slugs = list(closed.scalars().all())
    await session.commit()
    return slugs
