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
from letters.record import ledger


async def release(
    session: AsyncSession,
    letter_id: int,
    organization: str,
    now: datetime,
    email_hash: str | None = None,
) -> int:
    """Show the waiting names of `organization` whose threshold its count has reached.

    `email_hash` names the signer whose signature this transaction wrote, if any. Runs in
    the caller's transaction, after the caller has locked the letter's row (by counting,
    or as letters.record.signer_control does), so the count read here cannot move before commit.
    Returns how many names were shown.
    """
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
        col(Signature.name) != "",
    )
    if reached not in REVEAL_THRESHOLDS:
        if email_hash is None:
            return 0
        statement = statement.where(Signature.email_hash == email_hash)
    waiting = (await session.exec(statement.order_by(col(Signature.id)).with_for_update())).all()
    if not waiting:
        return 0
    for signature in waiting:
        signature.show_name = True
        signature.reveal_at = None
        signature.updated_at = now
        session.add(signature)
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
