"""Helpers shared by the views: sessions, the signing email, client address."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.requests import Request

from letters.mail import MailBackend, render
from letters.settings import Settings
from letters.signing import LinkToSend


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


async def send_signing_link(request: Request, link: LinkToSend) -> None:
    """Email the magic link. Raises MailError; the address is not kept afterwards."""
    settings = settings_of(request)
    mail: MailBackend = request.app.state.mail
    hours = max(1, round(settings.link_max_age / 3600))
    message = render(
        request.app.state.mail_env,
        "confirm_signature",
        link.email,
        {"link": link_url(settings, link.token), "hours": hours, "site": settings.base_url},
    )
    await mail.send(message)
