"""Helpers shared by the views: sessions, the signing email, client address."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from contextlib import asynccontextmanager
from typing import TypeVar

from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response

from letters import outbox
from letters.cache import TTLCache
from letters.cache import etag_for as etag_for  # shared by the views
from letters.i18n import gettext
from letters.mail import Message, render
from letters.public import LetterSnapshot, load_snapshot
from letters.settings import Settings
from letters.signing import Compose, LinkToSend

T = TypeVar("T")
NAMES_ON_LETTER_PAGE = 50


@asynccontextmanager
async def db_session(request: Request, write: bool = False) -> AsyncIterator[AsyncSession]:
    """A session for one request; `write=True` for the transactions that change data."""
    maker = request.app.state.writer if write else request.app.state.sessionmaker
    async with maker() as session:
        yield session


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def client_host(request: Request) -> str | None:
    return request.client.host if request.client else None


def link_url(settings: Settings, token: str) -> str:
    # BASE_URL, never the request's Host header: a forged Host must not redirect a link.
    return f"{settings.base_url}/verify/{token}"


def signing_email(request: Request) -> Compose:
    """What `request_signature` uses to write the email that carries a magic link."""
    settings = settings_of(request)
    hours = max(1, round(settings.link_max_age / 3600))
    env = request.app.state.mail_env

    def compose(address: str, token: str) -> Message:
        context = {"link": link_url(settings, token), "hours": hours, "site": settings.base_url}
        # The default subject is in the catalog; one an instance chose is kept as it is.
        subject = gettext(settings.mail_subject)
        return render(env, "confirm_signature", address, context, subject)

    return compose


def manage_email(request: Request) -> Compose:
    """The email carrying a manage link (letters.manage); as neutral as the signing email."""
    settings = settings_of(request)
    hours = max(1, round(settings.link_max_age / 3600))
    env = request.app.state.mail_env

    def compose(address: str, token: str) -> Message:
        # BASE_URL, never the Host header, as for signing links.
        context = {"link": f"{settings.base_url}/manage/{token}", "hours": hours}
        subject = gettext(settings.mail_manage_subject)
        return render(env, "manage_signature", address, context, subject)

    return compose


def deliver(request: Request, link: LinkToSend) -> BackgroundTask | None:
    """Send the queued email just after the response goes out, when this process sends mail.

    If that fails the message stays in the outbox and is retried with backoff, by this
    process's sender or by `letters worker`.
    """
    if not settings_of(request).mail_in_app or link.outbox_id is None:
        return None
    state = request.app.state
    return BackgroundTask(outbox.send_now, state.writer, state.mail, link.outbox_id)


async def cached(request: Request, key: Hashable, load: Callable[[], Awaitable[T]]) -> T:
    """`load()` at most once per CACHE_SECONDS per key in this process (see letters.cache)."""
    cache: TTLCache = request.app.state.cache
    return await cache.get(key, load)


def forget_letter(request: Request, slug: str) -> None:
    """Drop this process's cached copies of a letter after its counts changed here."""
    cache: TTLCache = request.app.state.cache
    cache.invalidate(lambda key: isinstance(key, tuple) and (slug in key or key[0] in LISTS))


LISTS = ("index", "api-letters", "fast-list")


async def letter_snapshot(request: Request, slug: str) -> LetterSnapshot:
    """The cached public view of a letter; raises LetterNotFound (also cached)."""

    async def load() -> LetterSnapshot:
        async with db_session(request) as session:
            return await load_snapshot(session, slug, NAMES_ON_LETTER_PAGE)

    return await cached(request, ("letter", slug), load)


def version(snapshot: LetterSnapshot) -> tuple[object, ...]:
    """What identifies the state of a letter's public record (for cache keys)."""
    letter = snapshot.letter
    return (letter.updated_at, letter.verified_count, letter.named_count, letter.status)


def conditional(
    request: Request,
    body: bytes,
    etag: str,
    media_type: str,
    cache_control: str,
    headers: dict[str, str] | None = None,
) -> Response:
    """A 200 with ETag and Cache-Control, or a 304 when the client already has this body."""
    all_headers = {"ETag": etag, "Cache-Control": cache_control, **(headers or {})}
    if_none_match = request.headers.get("if-none-match", "")
    if etag in [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]:
        return Response(status_code=304, headers=all_headers)
    return Response(body, media_type=media_type, headers=all_headers)
