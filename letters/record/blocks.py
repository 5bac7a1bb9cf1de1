"""Invalidated signatures stay invalid: `signing.confirm` asks here before counting."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from letters.db import dialect_insert, table_of
from letters.i18n import gettext
from letters.models import BlockedSigner
from letters.tokens import TokenError


class SignatureRemoved(TokenError):
    """The authors invalidated this person's signature; their links no longer confirm."""

    def __init__(self) -> None:
        super().__init__(
            "invalid_token",
            gettext(
                "The authors of this letter removed this signature, so it cannot be confirmed "
                "again."
            ),
        )


async def is_blocked(session: AsyncSession, letter_id: int, email_hash: str) -> bool:
    statement = select(BlockedSigner.id).where(
        BlockedSigner.letter_id == letter_id, BlockedSigner.email_hash == email_hash
    )
    return (await session.exec(statement)).first() is not None


async def block(session: AsyncSession, letter_id: int, email_hash: str, now: datetime) -> None:
    """Keep this person from confirming a signature of the letter again (caller's transaction)."""
    blocked = table_of(BlockedSigner)
    await session.exec(
        dialect_insert(session)(blocked)
        .values(letter_id=letter_id, email_hash=email_hash, created_at=now)
        .on_conflict_do_nothing(index_elements=[blocked.c.letter_id, blocked.c.email_hash])
    )
