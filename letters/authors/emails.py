"""Emails to authors, rendered from `templates/authors/email/`."""

from __future__ import annotations

from functools import cache
from typing import Any

from jinja2 import Environment
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from letters import i18n, outbox
from letters.mail import Message, make_mail_env
from letters.models import Author, LetterAuthor


@cache
def mail_env() -> Environment:
    return make_mail_env()


def render(name: str, to: str, context: dict[str, Any]) -> Message:
    """Render `authors/email/{name}.txt` and `.html`; the subject is the text's first line.

    In the current language: that of the author who asked for it (a sign-in link) or who
    made it happen (an invitation).
    """
    text = mail_env().get_template(f"authors/email/{name}.txt").render(context)
    subject, _, body = text.partition("\n")
    html = mail_env().get_template(f"authors/email/{name}.html").render(context)
    return Message(to=to, subject=subject.strip(), text=body.lstrip("\n"), html=html)


async def letter_authors(session: AsyncSession, letter_id: int) -> list[Author]:
    """Everyone who may act on a letter and can still sign in, owner first."""
    rows = await session.exec(
        select(Author)
        .join(LetterAuthor, col(LetterAuthor.author_id) == col(Author.id))
        .where(LetterAuthor.letter_id == letter_id, col(Author.disabled_at).is_(None))
        .order_by(col(LetterAuthor.role).desc(), col(Author.id))
    )
    return list(rows.all())


async def to_authors(
    session: AsyncSession, letter_id: int, name: str, context: dict[str, Any]
) -> list[int]:
    """Queue one email per author of the letter, in the caller's transaction.

    In the site's default language: these emails answer none of the authors (a signer's
    confirmation sends them), and authors' languages are not stored.
    """
    ids = []
    with i18n.using(i18n.DEFAULT):
        for author in await letter_authors(session, letter_id):
            ids.append(await outbox.enqueue(session, render(name, author.email, context)))
    return ids
