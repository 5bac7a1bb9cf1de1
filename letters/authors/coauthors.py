"""Co-authors: the owner invites people by email; they sign in like any author. An admin
may join any public letter (one loaded by `letters import` has no author until then)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from letters.authors import audit
from letters.authors.access import Act, NotAllowed, require_admin
from letters.authors.accounts import find_author, normalize_email
from letters.forms import FieldError
from letters.i18n import gettext
from letters.mail import compose, outbox
from letters.models import (
    SLUG_PATTERN,
    Author,
    AuthorRole,
    Letter,
    LetterAuthor,
    LetterStatus,
)
from letters.record.public import LetterNotFound
from letters.settings import Settings

MAX_AUTHORS = 20


async def authors_of(session: AsyncSession, letter_id: int) -> list[tuple[Author, LetterAuthor]]:
    """The letter's authors, owner first, then in the order they joined."""
    rows = await session.exec(
        select(Author, LetterAuthor)
        .join(LetterAuthor, col(LetterAuthor.author_id) == col(Author.id))
        .where(LetterAuthor.letter_id == letter_id)
        .order_by(col(LetterAuthor.role).desc(), col(LetterAuthor.id))
    )
    return [(author, membership) for author, membership in rows.all()]


async def invite(session: AsyncSession, act: Act, raw_email: Any, settings: Settings) -> int:
    """The letter's owner makes someone a co-author (creating their account) and emails
    them. Commits.

    Returns the queued email's id. Raises FieldError, NotAllowed or LetterNotFound.
    """
    owner, now = act.author, act.now
    letter = (await act.access(session, owner=True)).letter
    assert letter.id is not None
    email = normalize_email(raw_email)
    current = await authors_of(session, letter.id)
    if any(author.email == email for author, _ in current):
        raise FieldError(
            "email", gettext("%(email)s is already an author of this letter.", email=email)
        )
    if len(current) >= MAX_AUTHORS:
        raise FieldError(
            "email", gettext("A letter can have at most %(max)s authors.", max=MAX_AUTHORS)
        )
    invitee = await find_author(session, email)
    if invitee is None:
        invitee = Author(email=email, created_at=now)
        session.add(invitee)
        await session.flush()
    elif invitee.disabled_at is not None:
        raise FieldError("email", gettext("This person's account was disabled by an admin."))
    session.add(
        LetterAuthor(
            letter_id=letter.id,
            author_id=invitee.id,
            role=AuthorRole.coauthor,
            created_at=now,
        )
    )
    await audit.record(session, letter.id, owner, audit.Action.invited, detail=email, now=now)
    context = {
        "letter": letter,
        "inviter": owner.email,
        "sign_in": f"{settings.base_url}/authors/sign-in",
        "site": settings.base_url,
    }
    message = compose.render("authors/invited", email, context)
    outbox_id = await outbox.enqueue(session, settings.keys, message, now)
    await session.commit()
    return outbox_id


async def remove(session: AsyncSession, act: Act, author_id: int) -> None:
    """The owner removes a co-author, or a co-author leaves. Commits."""
    access = await act.access(session)
    leaving = author_id == act.author.id
    if not access.is_owner and not leaving:
        raise NotAllowed(gettext("Only the letter's owner can remove co-authors."))
    letter_id = access.letter.id
    assert letter_id is not None
    member = (
        await session.exec(
            select(Author, LetterAuthor)
            .join(LetterAuthor, col(LetterAuthor.author_id) == col(Author.id))
            .where(LetterAuthor.letter_id == letter_id, LetterAuthor.author_id == author_id)
        )
    ).first()
    if member is None:
        raise NotAllowed(gettext("This person is not an author of this letter."))
    if member[1].role == AuthorRole.owner:
        raise NotAllowed(gettext("The owner cannot be removed."))
    await session.exec(delete(LetterAuthor).where(col(LetterAuthor.id) == member[1].id))
    detail = member[0].email + (" (left)" if leaving else "")
    await audit.record(
        session, letter_id, act.author, audit.Action.removed_author, detail=detail, now=act.now
    )
    await session.commit()


async def public_letters(session: AsyncSession, admin: Author) -> list[tuple[Letter, int]]:
    """For an admin, the published and closed letters they are no author of, with how many
    authors each has, most recently changed first. Drafts stay private to their authors."""
    require_admin(admin)
    theirs = select(LetterAuthor.letter_id).where(LetterAuthor.author_id == admin.id)
    authors = (
        select(func.count())
        .where(col(LetterAuthor.letter_id) == col(Letter.id))
        .correlate(Letter)
        .scalar_subquery()
    )
    rows = await session.exec(
        select(Letter, authors)
        .where(col(Letter.status) != LetterStatus.draft, col(Letter.id).not_in(theirs))
        .order_by(col(Letter.updated_at).desc(), col(Letter.id).desc())
    )
    return [(letter, count) for letter, count in rows.all()]


async def join(session: AsyncSession, act: Act) -> str:
    """An admin becomes an author of a public letter, to moderate, export or close it: its
    owner if it has none, else a co-author. Recorded in the audit log. Commits; returns the
    role. Raises NotAllowed, or LetterNotFound for a draft (drafts stay private)."""
    admin, now = act.author, act.now
    require_admin(admin)
    if not SLUG_PATTERN.match(act.slug):
        raise LetterNotFound
    letter = (await session.exec(select(Letter).where(Letter.slug == act.slug))).first()
    if letter is None or letter.status == LetterStatus.draft:
        raise LetterNotFound
    assert letter.id is not None
    current = await authors_of(session, letter.id)
    for author, membership in current:
        if author.id == admin.id:
            return membership.role
    if len(current) >= MAX_AUTHORS:
        raise NotAllowed(gettext("A letter can have at most %(max)s authors.", max=MAX_AUTHORS))
    has_owner = any(membership.role == AuthorRole.owner for _, membership in current)
    role = AuthorRole.coauthor if has_owner else AuthorRole.owner
    session.add(LetterAuthor(letter_id=letter.id, author_id=admin.id, role=role, created_at=now))
    detail = "as owner" if role == AuthorRole.owner else "as co-author"
    await audit.record(session, letter.id, admin, audit.Action.joined, detail=detail, now=now)
    await session.commit()
    return role
