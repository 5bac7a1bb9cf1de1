"""Every email the site writes, from `templates/email/signers/`, `templates/email/authors/`
and `templates/email/recipients/` (a letter delivered to its recipient).

One template environment for all of them. Emails are written in the current language
(letters.i18n): that of the request that asks for them, except those to a letter's
authors that no author asked for (milestones), which are in the site's default language.
Links in emails are built from BASE_URL, never from a request's Host header, so a forged
Host cannot redirect them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import cache
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from letters import i18n
from letters.mail import outbox
from letters.mail.backend import DELIVERY, Attachment, Message
from letters.models import Author, LetterAuthor
from letters.resources import EMAIL_TEMPLATES
from letters.sealing import Keyring
from letters.settings import Settings

# Builds the email that carries a link: (address, token) -> Message.
Compose = Callable[[str, str], Message]


@cache
def environment() -> Environment:
    """Templates for mail: HTML parts are escaped, plain-text parts are not."""
    env = Environment(
        loader=FileSystemLoader(EMAIL_TEMPLATES),
        autoescape=select_autoescape(["html"]),
        keep_trailing_newline=True,
    )
    i18n.install(env)
    return env


def render(name: str, to: str, context: dict[str, Any], subject: str | None = None) -> Message:
    """Render `templates/email/{name}.txt` and `.html`.

    The subject is `subject` if given (instances configure the signers'), else the text
    template's first line.
    """
    env = environment()
    text = env.get_template(f"{name}.txt").render(context)
    first_line, _, body = text.partition("\n")
    html = env.get_template(f"{name}.html").render(context)
    return Message(to=to, subject=subject or first_line.strip(), text=body.lstrip("\n"), html=html)


def hours(seconds: int) -> int:
    """A link's lifetime as the emails and pages say it."""
    return max(1, round(seconds / 3600))


def signing_email(settings: Settings) -> Compose:
    """The email that carries a signer's magic link: short, plain, naming no letter."""

    def compose(address: str, token: str) -> Message:
        context = {
            "link": f"{settings.base_url}/verify/{token}",
            "hours": hours(settings.link_max_age),
            "site": settings.base_url,
        }
        # The default subject is in the catalog; one an instance chose is kept as it is.
        subject = i18n.gettext(settings.mail_subject)
        return render("signers/confirm_signature", address, context, subject)

    return compose


def manage_email(settings: Settings) -> Compose:
    """The email that carries a manage link; as neutral as the signing email."""

    def compose(address: str, token: str) -> Message:
        context = {
            "link": f"{settings.base_url}/manage/{token}",
            "hours": hours(settings.link_max_age),
        }
        subject = i18n.gettext(settings.mail_manage_subject)
        return render("signers/manage_signature", address, context, subject)

    return compose


def delivery_email(
    to: str,
    from_name: str,
    reply_to: str,
    context: dict[str, Any],
    attachments: tuple[Attachment, ...],
) -> Message:
    """The letter as delivered to its recipient, on the delivery channel: from the display
    name the authors chose at DELIVERY_FROM, answers going to the authors."""
    message = render("recipients/letter", to, context)
    return replace(
        message,
        channel=DELIVERY,
        from_name=from_name,
        reply_to=reply_to,
        attachments=attachments,
    )


async def letter_authors(session: AsyncSession, letter_id: int) -> list[Author]:
    """Everyone who may act on a letter and can still sign in, owner first."""
    rows = await session.exec(
        select(Author)
        .join(LetterAuthor, col(LetterAuthor.author_id) == col(Author.id))
        .where(LetterAuthor.letter_id == letter_id, col(Author.disabled_at).is_(None))
        .order_by(col(LetterAuthor.role).desc(), col(Author.id))
    )
    return list(rows.all())


async def to_admins(
    session: AsyncSession, keys: Keyring, name: str, context: dict[str, Any]
) -> list[int]:
    """Queue `authors/{name}` to every admin who can sign in, in the caller's transaction and
    the site's default language (nobody asked for it)."""
    rows = await session.exec(
        select(Author.email)
        .where(col(Author.is_admin).is_(True), col(Author.disabled_at).is_(None))
        .order_by(col(Author.id))
    )
    ids = []
    with i18n.using(i18n.DEFAULT):
        for email in rows.all():
            message = render(f"authors/{name}", email, context)
            ids.append(await outbox.enqueue(session, keys, message))
    return ids


async def to_authors(
    session: AsyncSession, keys: Keyring, letter_id: int, name: str, context: dict[str, Any]
) -> list[int]:
    """Queue `authors/{name}` to every author of the letter, in the caller's transaction.

    In the site's default language: these emails answer none of the authors (a signer's
    confirmation sends them), and authors' languages are not stored.
    """
    ids = []
    with i18n.using(i18n.DEFAULT):
        for author in await letter_authors(session, letter_id):
            message = render(f"authors/{name}", author.email, context)
            ids.append(await outbox.enqueue(session, keys, message))
    return ids
