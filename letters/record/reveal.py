"""Reveal thresholds: hidden names shown together once enough colleagues have signed.

A hidden signer may ask to have their name shown once N people from their organization
have signed (N in `letters.forms.REVEAL_THRESHOLDS`). Whenever an organization's count may
have reached a threshold, `release()` runs in that same transaction and shows every
waiting name of that organization whose threshold is met, all at once: nobody is ever the
first name shown alone. A revealed name stays revealed if withdrawals later lower the
count; its signer can hide it again through a manage link.

Counts move one at a time, and every transaction that moves one (or sets a threshold)
calls `release()`, so after each commit no waiting name has a threshold at or below its
organization's count. Hence only two kinds of names can become due: those whose
threshold the count has just reached, which can only happen when the count *is* a
threshold, and the signer whose own transaction this is. Checking the first only at
those few counts keeps `release()` to one indexed lookup on almost every confirmation.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from letters.forms import REVEAL_THRESHOLDS
from letters.models import LedgerKind, Letter, OrganizationCount, Signature
from letters.record import ledger, names
from letters.sealing import Keyring


def may_release(reached: int, reveal_at: int | None, name: str) -> bool:
    """Whether `release()` can show anything after a new signature brought its
    organization's count to `reached`: only when that count is a threshold, or when the
    new signer chose a threshold it meets (with a name to show). Otherwise, by the
    invariant above, no name is due and `release()` need not run."""
    if reached in REVEAL_THRESHOLDS:
        return True
    return reveal_at is not None and bool(name) and reveal_at <= reached


async def release(
    session: AsyncSession,
    keys: Keyring,
    letter_id: int,
    organization: str,
    now: datetime,
    email_hash: str | None = None,
    reached: int | None = None,
) -> int:
    """Show the waiting names of `organization` whose threshold its count has reached.

    `email_hash` names the signer whose signature this transaction wrote, if any. Runs in
    the caller's transaction, after the caller has locked the letter's row and the
    organization's count (by counting, or as letters.record.signer_control does), so the
    count read here cannot move before commit; `reached` is that count if the caller
    already has it. Returns how many names were shown. A name shown is opened (it was
    sealed while hidden, letters.record.names) and kept in clear from then on.

    Lock order: the waiting signatures of others are locked after the letter's row, the
    reverse of the order a manage link or the authors take (signature, then letter). So
    they are locked with SKIP LOCKED: a waiting signature another transaction holds is
    left to it, and that transaction (a manage link changing or withdrawing it, or the
    authors hiding or invalidating it) calls `release()` for its own signature after it
    has locked the letter, and so sees this count (or removes or hides the name anyway).
    """
    if reached is None:
        reached = (
            await session.exec(
                select(OrganizationCount.count).where(
                    OrganizationCount.letter_id == letter_id,
                    OrganizationCount.organization == organization,
                )
            )
        ).first()
    if not reached:
        return 0
    statement = select(Signature).where(
        Signature.letter_id == letter_id,
        Signature.organization == organization,
        col(Signature.show_name).is_(False),
        col(Signature.reveal_at).is_not(None),
        col(Signature.reveal_at) <= reached,
        col(Signature.sealed_name) != "",
    )
    if reached not in REVEAL_THRESHOLDS:
        if email_hash is None:
            return 0
        statement = statement.where(Signature.email_hash == email_hash)
        locking = statement.with_for_update()
    else:
        # Others' rows that another transaction holds are skipped (see above); this
        # transaction's own locks never make it skip a row.
        locking = statement.with_for_update(skip_locked=True)
    waiting = []
    for signature in (await session.exec(locking.order_by(col(Signature.id)))).all():
        name, title = names.of_signature(keys, signature)
        if name:  # a title alone is never shown
            waiting.append(signature)
            signature.show_name = True
            names.set_on_signature(keys, signature, name, title)
            signature.reveal_at = None
            signature.updated_at = now
            session.add(signature)
    if not waiting:
        return 0
    await session.exec(
        update(Letter)
        .where(col(Letter.id) == letter_id)
        .values(
            named_count=col(Letter.named_count) + len(waiting),
            hidden_count=col(Letter.hidden_count) - len(waiting),
            updated_at=now,
        )
    )
    await session.flush()
    for signature in waiting:
        await ledger.append(
            session,
            letter_id,
            LedgerKind.changed,
            organization=organization,
            named=True,
            name=signature.name,
            title=signature.title,
            commitment=signature.commitment,
            now=now,
        )
    return len(waiting)
