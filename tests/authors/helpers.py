"""Helpers the author tests share (this module holds no tests): accounts, sessions, forms."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import timedelta
from typing import Any

from sqlmodel import Session, select
from starlette.testclient import TestClient

from letters.authors.accounts import SESSION_SALT
from letters.db import writer
from letters.mail import outbox
from letters.mail.backend import Message
from letters.models import Author, AuthorSession, Letter, OutboxMessage, utcnow
from letters.sealing import keyring
from letters.tokens import Signer
from tests.conftest import SECRET
from tests.helpers import confirm_api, csrf_from, sign_api

SESSION_COOKIE = "letters_author"
SIGN_IN_LINK = re.compile(r"/authors/sign-in/([A-Za-z0-9_\-.]+)")

DRAFT = {
    "title": "Drop the contract",
    "slug": "drop-the-contract",
    "body": "We, the undersigned employees, ask our company to **drop the contract**.",
    "ask_title": "1",
    "domain-0": "microsoft.com",
    "organization-0": "Microsoft",
    "domain-1": "github.com",
    "organization-1": "GitHub",
    "domain-2": "corp.example",
    "organization-2": "Example Corp",
    "subdomains-2": "1",
}


def make_author(engine: Any, email: str, *, admin: bool = False, can_create: bool = True) -> Author:
    with Session(writer(engine)) as session:
        author = session.exec(select(Author).where(Author.email == email)).first()
        author = author or Author(email=email)
        author.is_admin = admin
        author.can_create = can_create or admin
        session.add(author)
        session.commit()
        session.refresh(author)
        return author


def session_cookie(engine: Any, author: Author) -> str:
    """A valid session for `author`, as its cookie value (no email round trip)."""
    token = secrets.token_urlsafe(32)
    with Session(engine) as session:
        session.add(
            AuthorSession(
                author_id=author.id,
                token_hash=hashlib.sha256(token.encode()).hexdigest(),
                method="link",
                expires_at=utcnow() + timedelta(days=1),
            )
        )
        session.commit()
    return str(Signer(SECRET).untimed(SESSION_SALT).dumps(token))


def sign_in_as(client: TestClient, engine: Any, email: str, **flags: bool) -> Author:
    """Make (or reuse) an author and give `client` their session cookie."""
    author = make_author(engine, email, **flags)
    client.cookies.set(SESSION_COOKIE, session_cookie(engine, author))
    return author


def sign_out(client: TestClient) -> None:
    client.cookies.delete(SESSION_COOKIE)


def post_form(
    client: TestClient, path: str, data: dict[str, str] | None = None, page: str | None = None
) -> Any:
    """POST `data` with a CSRF token read from `page` (by default one that always has a form)."""
    html = client.get(page or "/authors/sign-in").text
    fields = {"csrftoken": csrf_from(html), **(data or {})}
    return client.post(path, data=fields, follow_redirects=False)


def create_draft(client: TestClient, **changes: str) -> Any:
    data = {**DRAFT, "action": "save", **changes}
    return post_form(client, "/authors/letters/new", data)


def publish(client: TestClient, slug: str) -> Any:
    return post_form(client, f"/authors/letters/{slug}/publish")


def letter_row(db: Session, slug: str) -> Letter:
    db.rollback()
    return db.exec(select(Letter).where(Letter.slug == slug)).one()


def sign(client: TestClient, mailbox: Any, email: str, slug: str, **fields: Any) -> Any:
    """Sign and confirm through the API; returns the confirmation's response."""
    count = len(mailbox.messages)
    assert sign_api(client, email, slug=slug, **fields).status_code == 202
    mailbox.wait_for(count + 1)
    return confirm_api(client, mailbox.last_token(to=email))


def queued(db: Session, to: str | None = None) -> list[Message]:
    """The queued emails, opened (the rows hold them sealed), in the order they were queued."""
    db.rollback()
    statement = select(OutboxMessage).order_by(OutboxMessage.created_at)
    messages = [outbox.message_of(row, keyring(SECRET)) for row in db.exec(statement).all()]
    return [message for message in messages if to is None or message.to == to]
