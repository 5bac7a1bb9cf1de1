"""Author accounts, sign-in links and sessions.

Sign-in links follow the signers' rules: a link is a signed, timestamped token naming one
`AuthorLink` row and carrying a nonce whose hash the row keeps; opening it (GET) only shows
a button, and pressing it (POST) uses the link, once, before it expires. Mail scanners can
open the link as often as they like.

A session is a random token in a signed, HttpOnly, SameSite cookie; the database keeps the
token's hash. Signing out deletes the row, so a copy of the cookie taken before is
worthless afterwards, and a forged cookie fails the signature check before any lookup.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from itsdangerous import BadSignature
from sqlalchemy import Engine, delete, update
from sqlmodel import Session, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from letters import i18n
from letters.authors import audit
from letters.db import writer
from letters.domains import AddressError, parse_address
from letters.forms import FieldError, Requester
from letters.i18n import gettext
from letters.mail import compose, outbox
from letters.mail.backend import Message
from letters.models import (
    AuditEntry,
    Author,
    AuthorLink,
    AuthorRole,
    AuthorSession,
    Letter,
    LetterAuthor,
    utcnow,
)
from letters.ratelimit import Limit, hit
from letters.record import links
from letters.settings import Settings
from letters.tokens import LinkUsed, Signer

SESSION_SALT = "author-session"
LINK_MAX_AGE = 3600  # sign-in links are used at once; an hour is plenty
SESSION_DAYS = 14
DEVICE_SALT = "author-device"
DEVICE_DAYS = 365


class NotAnAuthor(Exception):
    """This person has no author account here (or it was disabled)."""


def normalize_email(raw: Any, field: str = "email") -> str:
    """An author's address as stored: checked, ASCII domain, lower case."""
    if not isinstance(raw, str) or not raw.strip():
        raise FieldError(field, gettext("Enter an email address."))
    if len(raw) > 256:
        raise FieldError(field, gettext("That email address is too long."))
    try:
        return parse_address(raw).email
    except AddressError as error:
        raise FieldError(field, error.message) from None


async def find_author(session: AsyncSession, email: str) -> Author | None:
    return (await session.exec(select(Author).where(Author.email == email))).first()


async def add_author(
    session: AsyncSession, email: str, *, admin: bool = False, can_create: bool = True
) -> tuple[Author, bool]:
    """Create an author, or grant more to an existing one (never less). Returns (author, new).

    The caller commits.
    """
    author = await find_author(session, email)
    created = author is None
    if author is None:
        author = Author(email=email)
    author.is_admin = author.is_admin or admin
    author.can_create = author.can_create or can_create or admin
    author.disabled_at = None
    session.add(author)
    await session.flush()
    return author, created


async def list_authors(session: AsyncSession) -> list[Author]:
    return list((await session.exec(select(Author).order_by(col(Author.email)))).all())


async def set_can_create(session: AsyncSession, author_id: int, allowed: bool) -> Author | None:
    """Allow or stop an author starting letters; admins always may. The caller commits."""
    author = await session.get(Author, author_id)
    if author is None or author.is_admin:
        return author
    author.can_create = allowed
    session.add(author)
    await session.flush()
    return author


# --- sign-in links -----------------------------------------------------------------------


# The job a sign-in request queues (letters.mail.outbox.Job): its sender emails a link only
# to an author who may sign in (`prepare_link`).
SIGN_IN_JOB = "author-sign-in"


async def request_link(
    session: AsyncSession,
    raw_email: Any,
    requester: Requester,
    *,
    next_path: str | None = None,
    device: str | None = None,
    now: datetime | None = None,
) -> int:
    """Queue a sign-in link for an address, emailed only if it is an author's. Commits.

    `next_path` (already checked to be an author page) is where the link leads afterwards.
    The request does the same work whether or not the address belongs to an author (the
    rate limits and one sealed job); the sender decides (`prepare_link`), after the answer
    has gone, so neither the page nor its timing tells who writes letters here. Returns
    the job's outbox id. Raises FieldError or RateLimited (then nothing is written).

    Anyone may ask for links to any address, so an address's limit could be spent by
    someone else to keep its owner from signing in. `device` is the cookie of a browser
    that signed in as this address before (`device_cookie`): its requests draw on a limit
    of its own, which no one else's requests spend.
    """
    now = now or utcnow()
    signer, settings = requester.signer, requester.settings
    email = normalize_email(raw_email)
    address = _address_hash(signer, email)
    await hit(
        session,
        [
            # A browser that signed in as this address before spends a budget of its own.
            Limit(
                device_key(signer, device, address) or "author:" + address,
                settings.limit_per_address,
            ),
            Limit("ip:" + requester.ip_key(), settings.limit_per_ip),
        ],
        settings.limit_window,
        now,
    )
    args = {"email": email, "next": next_path}
    return await outbox.queue_job(session, settings.keys, SIGN_IN_JOB, args, now)


def _address_hash(signer: Signer, email: str) -> str:
    """An author's address as rate limits and device cookies name it: a keyed hash."""
    return signer.key_hash("author-email", email)


def device_cookie(signer: Signer, email: str) -> str:
    """The value a browser keeps once it signed in as `email` by link: signed, naming the
    address only by a keyed hash, with a random id so each browser's budget is its own."""
    address = _address_hash(signer, normalize_email(email))
    return signer.untimed(DEVICE_SALT).dumps([address, secrets.token_hex(8)])


def device_key(signer: Signer, cookie: str | None, address: str) -> str | None:
    """The rate-limit key of this browser's own budget for the address hashed as `address`
    (`_address_hash`), if `cookie` came from `device_cookie` for it; else None (any other
    cookie counts for nothing)."""
    if not cookie or len(cookie) > 200:
        return None
    try:
        value = signer.untimed(DEVICE_SALT).loads(cookie)
    except BadSignature:
        return None
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value)):
        return None
    named, browser = value
    if not hmac.compare_digest(named, address):
        return None
    return f"author-device:{address}:{browser}"


async def prepare_link(
    session: AsyncSession,
    args: dict[str, Any],
    signer: Signer,
    settings: Settings,
    now: datetime | None = None,
) -> Message | None:
    """In the sender: the email with a new sign-in link if the address is an author's who
    may sign in, else None (nothing is written then). Commits the link's row."""
    now = now or utcnow()
    author = await find_author(session, args["email"])
    if author is None or author.disabled_at is not None:
        await session.rollback()
        return None
    await session.exec(
        delete(AuthorLink).where(col(AuthorLink.expires_at) < now - timedelta(days=1))
    )
    _, token = await links.issue(
        session, signer, links.AUTHOR, now, LINK_MAX_AGE, author_id=author.id
    )
    await session.commit()
    url = f"{settings.base_url}/authors/sign-in/{token}"
    if args["next"]:
        url += "?next=" + quote(args["next"])
    context = {
        "link": url,
        "minutes": LINK_MAX_AGE // 60,
        "site": settings.base_url,
    }
    with i18n.using(args["language"]):
        return compose.render("authors/sign_in", args["email"], context)


@dataclass(frozen=True)
class LinkView:
    link: AuthorLink
    author: Author


async def inspect_link(
    session: AsyncSession, token: str, signer: Signer, now: datetime | None = None
) -> LinkView:
    """Read a sign-in link without using it (safe for GET, HEAD and mail scanners)."""
    now = now or utcnow()
    link = await links.find(session, signer, links.AUTHOR, token, LINK_MAX_AGE, now)
    if link.used_at is not None:
        raise LinkUsed
    author = await session.get(Author, link.author_id)
    if author is None or author.disabled_at is not None:
        raise links.invalid(links.AUTHOR)
    return LinkView(link=link, author=author)


async def use_link(
    session: AsyncSession, token: str, signer: Signer, now: datetime | None = None
) -> tuple[Author, str]:
    """Use a sign-in link, once, and start a session. Commits. Returns (author, session token)."""
    now = now or utcnow()
    view = await inspect_link(session, token, signer, now)
    await links.claim(session, links.AUTHOR, view.link, now)
    token_value = await start_session(session, view.author, "link", now)
    return view.author, token_value


# --- sessions ----------------------------------------------------------------------------


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def start_session(
    session: AsyncSession, author: Author, method: str, now: datetime | None = None
) -> str:
    """Record a new session for `author` and commit; returns the token for the cookie."""
    now = now or utcnow()
    token = secrets.token_urlsafe(32)
    await session.exec(
        delete(AuthorSession).where(
            col(AuthorSession.author_id) == author.id, col(AuthorSession.expires_at) < now
        )
    )
    session.add(
        AuthorSession(
            author_id=author.id,
            token_hash=_token_hash(token),
            method=method,
            created_at=now,
            expires_at=now + timedelta(days=SESSION_DAYS),
        )
    )
    await session.exec(
        update(Author).where(col(Author.id) == author.id).values(last_sign_in_at=now)
    )
    await session.commit()
    return token


def cookie_value(signer: Signer, token: str) -> str:
    return str(signer.untimed(SESSION_SALT).dumps(token))


def _token_from_cookie(signer: Signer, value: str | None) -> str | None:
    if not value or not value.isascii() or len(value) > 200:
        return None
    try:
        token: Any = signer.untimed(SESSION_SALT).loads(value)
    except BadSignature:
        return None
    return token if isinstance(token, str) and token else None


async def load_session(
    session: AsyncSession, signer: Signer, cookie: str | None, now: datetime | None = None
) -> Author | None:
    """The author a session cookie belongs to, or None (forged, expired or signed out)."""
    now = now or utcnow()
    token = _token_from_cookie(signer, cookie)
    if token is None:
        return None
    row = (
        await session.exec(
            select(Author)
            .join(AuthorSession, col(AuthorSession.author_id) == col(Author.id))
            .where(
                AuthorSession.token_hash == _token_hash(token),
                col(AuthorSession.expires_at) > now,
                col(Author.disabled_at).is_(None),
            )
        )
    ).first()
    return row


async def end_session(session: AsyncSession, signer: Signer, cookie: str | None) -> None:
    """Sign out this browser. Commits."""
    token = _token_from_cookie(signer, cookie)
    if token is not None:
        await session.exec(
            delete(AuthorSession).where(col(AuthorSession.token_hash) == _token_hash(token))
        )
    await session.commit()


async def end_all_sessions(session: AsyncSession, author_id: int) -> None:
    """Sign an author out everywhere. Commits."""
    await session.exec(delete(AuthorSession).where(col(AuthorSession.author_id) == author_id))
    await session.commit()


# --- single sign-on ------------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """What a verified id_token says about the person."""

    issuer: str
    subject: str
    email: str | None  # only when the provider says it is verified
    name: str


async def author_for_identity(
    session: AsyncSession, identity: Identity, now: datetime | None = None
) -> Author:
    """The author this provider identity belongs to; links it on first use. Commits.

    Known (issuer, subject) pairs sign in directly. Otherwise the provider's verified email
    must be an author's address, and the pair is remembered for next time. Raises
    NotAnAuthor.
    """
    author = (
        await session.exec(
            select(Author).where(
                Author.oidc_issuer == identity.issuer, Author.oidc_subject == identity.subject
            )
        )
    ).first()
    if author is None and identity.email:
        try:
            email = normalize_email(identity.email)
        except FieldError:
            raise NotAnAuthor from None
        author = await find_author(session, email)
        if author is not None and author.oidc_subject is None:
            author.oidc_issuer, author.oidc_subject = identity.issuer, identity.subject
            if identity.name and not author.name:
                author.name = identity.name[:100]
            session.add(author)
            await session.flush()
        elif author is not None:
            author = None  # already linked to another identity: refuse rather than guess
    if author is None or author.disabled_at is not None:
        await session.rollback()
        raise NotAnAuthor
    await session.commit()
    return author


# --- the command line (synchronous) --------------------------------------------------------


def add_admin(engine: Engine, raw_email: str) -> bool:
    """`letters admin add`: make someone an admin (and an author). True if newly created.

    Raises FieldError for a bad address.
    """
    email = normalize_email(raw_email)
    with Session(writer(engine)) as session:
        author = session.exec(select(Author).where(Author.email == email)).first()
        created = author is None
        author = author or Author(email=email)
        author.is_admin = author.can_create = True
        author.disabled_at = None
        session.add(author)
        session.commit()
    return created


def attach_author(engine: Engine, slug: str, email: str) -> str | None:
    """`letters import --author`: make `email` (normalized) an author of the letter at `slug`,
    its owner if it has none, else a co-author; an account is made if needed (it may work on
    this letter, not start others). Returns the role given, or None if already an author.
    """
    with Session(writer(engine)) as session:
        letter_id = session.exec(select(Letter.id).where(Letter.slug == slug)).one()
        author = session.exec(select(Author).where(Author.email == email)).first()
        if author is None:
            author = Author(email=email)
            session.add(author)
            session.flush()
        roles = session.exec(
            select(LetterAuthor.author_id, LetterAuthor.role).where(
                LetterAuthor.letter_id == letter_id
            )
        ).all()
        if any(author_id == author.id for author_id, _ in roles):
            return None
        has_owner = any(role == AuthorRole.owner for _, role in roles)
        role = AuthorRole.coauthor if has_owner else AuthorRole.owner
        session.add(LetterAuthor(letter_id=letter_id, author_id=author.id, role=role))
        session.add(
            AuditEntry(
                letter_id=letter_id,
                author_email="letters import",
                action=audit.Action.invited,
                detail=f"{email} ({role})",
            )
        )
        session.commit()
        return str(role)


def admins(engine: Engine) -> list[str]:
    with Session(engine) as session:
        rows = session.exec(select(Author.email).where(col(Author.is_admin).is_(True)))
        return sorted(rows.all())
