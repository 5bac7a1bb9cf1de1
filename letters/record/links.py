"""Magic links, one protocol for every kind: a signer's link, a manage link, an author's
sign-in link.

A link carries `{id_field: row id, "n": nonce}`, signed and timestamped by itsdangerous
with the kind's own salt, so a token of one kind never reads as another. Its row keeps
only the nonce's SHA-256: the link cannot be rebuilt from the database, and a link names
one row. Reading a link (`find`) changes nothing, so a GET, a HEAD or a mail scanner
can open it any number of times. Using it (`claim`) is one statement,
`UPDATE ... SET used_at = now WHERE id = ? AND used_at IS NULL AND expires_at > now`, in
the transaction that does what the link is for: either that work is written and the link
is used up, or neither.

The salts, payload shapes and lifetimes are those links already in inboxes were made
with: never change them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from itsdangerous import BadSignature, SignatureExpired
from sqlalchemy import update
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from letters.i18n import N_, gettext
from letters.models import AuthorLink, ManageLink, PendingSignature
from letters.tokens import LinkUsed, Signer, TokenError, hash_nonce, new_nonce

RowT = TypeVar("RowT", PendingSignature, ManageLink, AuthorLink)


@dataclass(frozen=True)
class LinkKind(Generic[RowT]):
    salt: str
    id_field: str  # the payload's key for the row id
    table: type[RowT]
    invalid: str  # messages marked with N_(), translated where raised
    expired: str
    max_length: int = 1000


SIGNER = LinkKind(
    "signer-link",
    "p",
    PendingSignature,
    N_("This link is not valid."),
    N_("This link has expired."),
)
MANAGE = LinkKind(
    "manage-link", "m", ManageLink, N_("This link is not valid."), N_("This link has expired.")
)
AUTHOR = LinkKind(
    "author-link",
    "l",
    AuthorLink,
    N_("This sign-in link is not valid."),
    N_("This sign-in link has expired."),
    max_length=500,
)


def invalid(kind: LinkKind[Any]) -> TokenError:
    return TokenError("invalid_token", gettext(kind.invalid))


def expired(kind: LinkKind[Any]) -> TokenError:
    return TokenError("expired_token", gettext(kind.expired))


def make(signer: Signer, kind: LinkKind[Any], row_id: int, nonce: str) -> str:
    return str(signer.timed(kind.salt).dumps({kind.id_field: row_id, "n": nonce}))


def read(signer: Signer, kind: LinkKind[Any], token: str, max_age: int) -> tuple[int, str]:
    """(row id, nonce) from a token; TokenError if it is not one of ours, or expired."""
    # Tokens are URL-safe base64: this also refuses lone surrogates and oversized input.
    if not token.isascii() or len(token) > kind.max_length:
        raise invalid(kind)
    try:
        data: Any = signer.timed(kind.salt).loads(token, max_age=max_age)
    except SignatureExpired:
        raise expired(kind) from None
    except BadSignature:
        raise invalid(kind) from None
    if (
        not isinstance(data, dict)
        or type(data.get(kind.id_field)) is not int
        or not isinstance(data.get("n"), str)
    ):
        raise invalid(kind)
    return data[kind.id_field], data["n"]


async def issue(
    session: AsyncSession,
    signer: Signer,
    kind: LinkKind[RowT],
    now: datetime,
    max_age: int,
    **fields: Any,
) -> tuple[RowT, str]:
    """Add a link's row (`fields` plus a fresh nonce and its lifetime) in the caller's
    transaction; the row and its token."""
    nonce = new_nonce()
    row = kind.table(
        **fields,
        nonce_hash=hash_nonce(nonce),
        created_at=now,
        expires_at=now + timedelta(seconds=max_age),
    )
    session.add(row)
    await session.flush()
    return row, make(signer, kind, row.id, nonce)


async def find(
    session: AsyncSession,
    signer: Signer,
    kind: LinkKind[RowT],
    token: str,
    max_age: int,
    now: datetime,
) -> RowT:
    """The row a link names, used or not; TokenError if there is none or it expired unused.

    Changes nothing.
    """
    row_id, nonce = read(signer, kind, token, max_age)
    row = await session.get(kind.table, row_id)
    if row is None or row.nonce_hash != hash_nonce(nonce):
        raise invalid(kind)
    if row.used_at is None and row.expires_at <= now:
        raise expired(kind)
    return row


async def claim(session: AsyncSession, kind: LinkKind[RowT], row: RowT, now: datetime) -> None:
    """Use the link up, in the caller's transaction: only one request ever succeeds.

    Otherwise the transaction is rolled back and LinkUsed (or the expired error) raised.
    """
    table = kind.table
    claimed = await session.exec(
        update(table)
        .where(
            col(table.id) == row.id,
            col(table.used_at).is_(None),
            col(table.expires_at) > now,
        )
        .values(used_at=now)
    )
    if claimed.rowcount != 1:
        expired_now = row.expires_at <= now  # read before the rollback expires the object
        await session.rollback()
        if expired_now:
            raise expired(kind)
        raise LinkUsed
