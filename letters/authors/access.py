"""Who may do what: every author action goes through `letter_for` before touching a letter.

An admin allows new authors (`Author.can_create`); an author who starts a letter owns it
and may invite co-authors, who may do everything with that letter except manage its
authors. Nobody else learns that a draft exists: a letter the author has no part in is
"not found", exactly like a missing one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from letters.i18n import gettext
from letters.models import SLUG_PATTERN, Author, AuthorRole, Letter, LetterAuthor, utcnow
from letters.record.public import LetterNotFound


class NotAllowed(Exception):
    """The author takes part in this letter but may not do this; `message` says why
    (translated where it is made)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Access:
    letter: Letter
    role: str

    @property
    def is_owner(self) -> bool:
        return self.role == AuthorRole.owner


async def letter_for(
    session: AsyncSession, author: Author, slug: str, *, owner: bool = False
) -> Access:
    """The letter at `slug` if `author` is one of its authors; raises LetterNotFound.

    With `owner=True`, raises NotAllowed for a co-author.
    """
    if not isinstance(slug, str) or not SLUG_PATTERN.match(slug):
        raise LetterNotFound
    row = (
        await session.exec(
            select(Letter, LetterAuthor.role)
            .join(LetterAuthor, col(LetterAuthor.letter_id) == col(Letter.id))
            .where(Letter.slug == slug, LetterAuthor.author_id == author.id)
        )
    ).first()
    if row is None:
        raise LetterNotFound
    access = Access(letter=row[0], role=row[1])
    if owner and not access.is_owner:
        raise NotAllowed(gettext("Only the letter's owner can do this."))
    return access


@dataclass(frozen=True)
class Act:
    """Who acts on which letter, and when: what every author action starts from."""

    author: Author
    slug: str
    now: datetime = field(default_factory=utcnow)

    async def access(self, session: AsyncSession, *, owner: bool = False) -> Access:
        """`letter_for` this author and slug."""
        return await letter_for(session, self.author, self.slug, owner=owner)


def require_creator(author: Author) -> None:
    if not (author.can_create or author.is_admin):
        raise NotAllowed(
            gettext(
                "You can work on letters you were invited to, but not start new ones. "
                "Ask an admin of this site to allow you."
            )
        )


def require_admin(author: Author) -> None:
    if not author.is_admin:
        raise NotAllowed(gettext("Only an admin of this site can do this."))


async def my_letters(session: AsyncSession, author: Author) -> list[tuple[Letter, str]]:
    """The letters `author` takes part in and their role, most recently changed first."""
    rows = await session.exec(
        select(Letter, LetterAuthor.role)
        .join(LetterAuthor, col(LetterAuthor.letter_id) == col(Letter.id))
        .where(LetterAuthor.author_id == author.id)
        .order_by(col(Letter.updated_at).desc(), col(Letter.id).desc())
    )
    return [(letter, role) for letter, role in rows.all()]
