"""Every change to a counted signature, in the caller's transaction: count one in, show it
otherwise (named or hidden, another name), or take it out (withdrawn by its signer,
invalidated by the authors).

The counters (the letter's row, its organization and daily counts) and the ledger move in
the same transaction as the signature row they count, so either all are written or none.
Row locks are taken in one order everywhere: the signature's row, then the letter's (the
first counter update or ledger entry locks it until commit; on SQLite the write lock is
already held), then the organization's count, then the day's count. A new signature is
counted by one statement in letters.record.signing that takes them in that same order.
Reveal thresholds (letters.record.reveal) rely on it: they read the organization count
after the letter's row is locked.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, update
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from letters.db import dialect_insert, table_of
from letters.models import (
    DailyCount,
    LedgerKind,
    Letter,
    OrganizationCount,
    PendingSignature,
    Signature,
)
from letters.record import ledger, names
from letters.sealing import Keyring


class SignatureGone(Exception):
    """The signature was removed meanwhile (withdrawn or invalidated)."""


async def count(
    session: AsyncSession,
    letter_id: int,
    organization: str,
    named: bool,
    now: datetime,
    delta: int = 1,
) -> None:
    """Add `delta` (1, or -1 to remove) verified signatures to the letter's counters.

    Runs in the caller's transaction, which must also write the signature row (and the
    ledger entry) it counts. The daily counts record the net change on the day it happens.
    """
    await session.exec(
        update(Letter)
        .where(col(Letter.id) == letter_id)
        .values(
            verified_count=col(Letter.verified_count) + delta,
            named_count=col(Letter.named_count) + (delta if named else 0),
            hidden_count=col(Letter.hidden_count) + (0 if named else delta),
            updated_at=now,
        )
    )
    insert = dialect_insert(session)
    table = table_of(OrganizationCount)
    await session.exec(
        insert(table)
        .values(letter_id=letter_id, organization=organization, count=delta)
        .on_conflict_do_update(
            index_elements=[table.c.letter_id, table.c.organization],
            set_={"count": table.c.count + delta},
        )
    )
    daily = table_of(DailyCount)
    await session.exec(
        insert(daily)
        .values(
            letter_id=letter_id, day=now.date().isoformat(), organization=organization, count=delta
        )
        .on_conflict_do_update(
            index_elements=[daily.c.letter_id, daily.c.day, daily.c.organization],
            set_={"count": daily.c.count + delta},
        )
    )


async def show_as(
    session: AsyncSession,
    signature: Signature,
    *,
    show_name: bool,
    name: str,
    title: str,
    reveal_at: int | None,
    now: datetime,
    keys: Keyring,
) -> int:
    """Change how a counted signature is shown, in the caller's transaction, which must
    hold the signature's row lock. Moves the named/hidden counts, blanks a name that stops
    being public in the ledger and records the change there, and keeps the name in clear
    only if shown, sealed otherwise (letters.record.names). Returns the named shift.

    Used by a second confirmation (letters.record.signing), by manage links
    (letters.record.signer_control) and by the authors' moderation.
    """
    if signature.name_hidden_by_authors:
        # The authors hid this name: nothing the signer does can show it, or keep it.
        show_name, name, title, reveal_at = False, "", "", None
    shift = 0
    if signature.show_name != show_name:
        shift = 1 if show_name else -1
    # updated_at moves even when only a name or title changed: caches key on it.
    await session.exec(
        update(Letter)
        .where(col(Letter.id) == signature.letter_id)
        .values(
            named_count=col(Letter.named_count) + shift,
            hidden_count=col(Letter.hidden_count) - shift,
            updated_at=now,
        )
    )
    before = (signature.show_name, *names.of_signature(keys, signature))
    changed = before != (show_name, name, title)
    if changed and signature.show_name:
        # The name shown until now stops being public (or is replaced): blank it.
        await ledger.redact_names(session, signature.letter_id, signature.commitment)
    signature.show_name = show_name
    names.set_on_signature(keys, signature, name, title)
    signature.reveal_at = None if show_name else reveal_at
    signature.updated_at = now
    session.add(signature)
    await session.flush()
    if changed and (signature.show_name or shift):
        await ledger.append(
            session,
            signature.letter_id,
            LedgerKind.changed,
            organization=signature.organization,
            named=signature.show_name,
            name=signature.name,
            title=signature.title,
            commitment=signature.commitment,
            now=now,
        )
    return shift


async def uncount(
    session: AsyncSession, signature: Signature, kind: LedgerKind, now: datetime
) -> None:
    """Take a counted signature out: its signer withdrew it, or the authors invalidated it.

    Deletes the row, moves the counters by -1, blanks its names in the ledger and records
    the removal there (an entry that uncounts carries no name). Pending signing links of
    this person for the letter go too: they hold a name as typed. Raises SignatureGone if
    the row was already deleted. The caller holds the signature's row lock.
    """
    letter_id = signature.letter_id
    deleted = await session.exec(delete(Signature).where(col(Signature.id) == signature.id))
    if deleted.rowcount != 1:
        raise SignatureGone
    await count(session, letter_id, signature.organization, signature.show_name, now, delta=-1)
    await ledger.redact_names(session, letter_id, signature.commitment)
    await ledger.append(
        session,
        letter_id,
        kind,
        organization=signature.organization,
        named=False,
        name="",
        title="",
        commitment=signature.commitment,
        now=now,
    )
    await session.exec(
        delete(PendingSignature).where(
            col(PendingSignature.letter_id) == letter_id,
            col(PendingSignature.email_hash) == signature.email_hash,
        )
    )
