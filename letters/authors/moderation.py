"""Moderation: authors hide a troll's name or invalidate a signature, on the record.

Authors never see an email address or a hidden name: the list below reads a name from the
database only where it is public. Each action changes the counters, the public ledger and
the audit log in one transaction, the way signing does (letters.record.signing).

Invalidating deletes the signature and blocks its person (by the keyed hash of their
address) from that letter: `signing.confirm` refuses their links from then on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, case
from sqlalchemy import select as sql_select
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from letters.authors import audit
from letters.authors.access import Act, NotAllowed
from letters.forms import FieldError, clean_text
from letters.i18n import N_, gettext
from letters.models import (
    LedgerKind,
    Letter,
    LetterStatus,
    Signature,
)
from letters.record import blocks, counting
from letters.sealing import Keyring

PAGE = 100


class Reason(audit.Labelled):
    """Why the authors invalidate a signature; the log records the reason's code."""

    spam = "spam", N_("Spam or abuse")
    not_employee = "not_employee", N_("Not an employee (a shared or misused address)")
    impersonation = "impersonation", N_("Impersonation: signed under someone else's name")
    other = "other", N_("Other")


# The choices of the authors' form.
REASONS = {reason: reason.label for reason in Reason}


class AlreadyDone(Exception):
    """The signature is already hidden or no longer counted; nothing changed."""


@dataclass(frozen=True)
class Row:
    """A signature as authors see it: a public name, or only that it is hidden."""

    id: int
    named: bool
    name: str  # "" when hidden
    title: str  # "" when hidden
    organization: str
    verified_at: datetime
    version: int


def _public_columns() -> Select[int, bool, str, str, str, datetime, int]:
    # A hidden name never leaves the database: the query itself blanks it.
    public_name = case((col(Signature.show_name), col(Signature.name)), else_="")
    public_title = case((col(Signature.show_name), col(Signature.title)), else_="")
    return sql_select(
        col(Signature.id),
        col(Signature.show_name),
        public_name,
        public_title,
        col(Signature.organization),
        col(Signature.verified_at),
        col(Signature.letter_version),
    )


async def signatures(
    session: AsyncSession,
    letter: Letter,
    after_id: int | None = None,
    limit: int = PAGE,
    named_only: bool = False,
) -> tuple[list[Row], int | None]:
    """A page of a letter's verified signatures, newest first; (rows, id to continue before)."""
    statement = _public_columns().where(col(Signature.letter_id) == letter.id)
    if named_only:
        statement = statement.where(col(Signature.show_name).is_(True))
    if after_id is not None:
        statement = statement.where(col(Signature.id) < after_id)
    connection = await session.connection()  # seven columns: past sqlmodel.select's typing
    rows = (
        await connection.execute(statement.order_by(col(Signature.id).desc()).limit(limit + 1))
    ).all()
    page = [Row(*row) for row in rows[:limit]]
    return page, (page[-1].id if len(rows) > limit else None)


async def row(session: AsyncSession, letter: Letter, signature_id: int) -> Row | None:
    """One signature as authors see it."""
    statement = _public_columns().where(
        col(Signature.letter_id) == letter.id, col(Signature.id) == signature_id
    )
    connection = await session.connection()
    found = (await connection.execute(statement)).first()
    return Row(*found) if found else None


async def _locked_signature(
    session: AsyncSession, act: Act, signature_id: int
) -> tuple[Letter, Signature]:
    letter = (await act.access(session)).letter
    if letter.status == LetterStatus.draft:
        raise NotAllowed(gettext("A draft has no signatures."))
    # The signature first, then the letter's row (in count/ledger): the order confirm uses.
    signature = (
        await session.exec(
            select(Signature)
            .where(Signature.id == signature_id, Signature.letter_id == letter.id)
            .with_for_update()
        )
    ).first()
    if signature is None:
        await session.rollback()
        raise AlreadyDone
    return letter, signature


async def _logged(
    session: AsyncSession,
    act: Act,
    letter: Letter,
    signature: Signature,
    action: audit.Action,
    detail: str,
) -> None:
    """Say in the audit log what was done to the signature (by its organization and
    commitment, never its name), and commit."""
    assert letter.id is not None
    await audit.record(
        session,
        letter.id,
        act.author,
        action,
        organization=signature.organization,
        commitment=signature.commitment,
        detail=detail,
        now=act.now,
    )
    await session.commit()


async def hide_name(session: AsyncSession, act: Act, signature_id: int, keys: Keyring) -> None:
    """Hide a shown name: the signature keeps counting, as hidden. Commits."""
    letter, signature = await _locked_signature(session, act, signature_id)
    if not signature.show_name:
        await session.rollback()
        raise AlreadyDone
    assert letter.id is not None
    # The name is gone for good: the authors hid it, and nobody may see a hidden name. The
    # flag keeps it hidden whatever the signer does later; show_as moves the counts, blanks
    # the name in the ledger and records the change, as for a signer's own change.
    signature.name_hidden_by_authors = True
    await counting.show_as(
        session,
        signature,
        show_name=False,
        name="",
        title="",
        reveal_at=None,
        now=act.now,
        keys=keys,
    )
    detail = f"signed {signature.verified_at.date().isoformat()}"
    await _logged(session, act, letter, signature, audit.Action.hid_name, detail)


def parse_reason(reason: Any, details: Any) -> str:
    """The recorded reason: one of REASONS, with optional details (required for "other")."""
    if reason not in REASONS:
        raise FieldError("reason", gettext("Choose why this signature is invalid."))
    text = clean_text(details, "details", N_("The details"), 200)
    if reason == Reason.other and not text:
        raise FieldError("details", gettext("Say why this signature is invalid."))
    return f"{reason}: {text}" if text else str(reason)


async def invalidate(session: AsyncSession, act: Act, signature_id: int, reason: str) -> None:
    """Stop counting a signature and keep its person from confirming again. Commits."""
    letter, signature = await _locked_signature(session, act, signature_id)
    assert letter.id is not None
    # Counts, ledger, and the links already on their way for this person, as for a
    # withdrawal; then the person is blocked from confirming back in.
    await counting.uncount(session, signature, LedgerKind.invalidated, act.now)
    await blocks.block(session, letter.id, signature.email_hash, act.now)
    detail = (
        f"{'named' if signature.show_name else 'hidden'}, signed "
        f"{signature.verified_at.date().isoformat()}; reason {reason}"
    )
    await _logged(session, act, letter, signature, audit.Action.invalidated, detail)
