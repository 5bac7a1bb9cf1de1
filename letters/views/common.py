"""Helpers shared by the views: sessions, the signing email, client address."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.background import BackgroundTask
from starlette.requests import Request

from letters import outbox
from letters.mail import Message, render
from letters.settings import Settings
from letters.signing import Compose, LinkToSend


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
        return render(env, "confirm_signature", address, context)

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
