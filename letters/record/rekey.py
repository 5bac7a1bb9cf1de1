"""Address hashes after a key change: a returning signer is matched, then moved to the new key.

An address is stored only as its keyed hash (letters.tokens.Signer.email_hash). After
SECRET_KEY changes, the hashes written before are under a key now in OLD_SECRET_KEYS, and
a new request would hash the same address differently: the person would not be
recognized, and could be counted twice. So each sign request and each request for a
manage link, while OLD_SECRET_KEYS lists a key, hashes the typed address under each older
key too, and moves whatever is stored under an older hash (signatures, pending
signatures, manage links, blocks) to the hash under the current key, in the caller's
transaction, before anything else looks the address up. A hidden name is bound to its
signature's hash (letters.record.names), so it is sealed again under the current key.
Only what belongs to that address moves; a signer who never returns stays under the old
key, which must therefore stay listed as long as their signature may be matched.

`reseal` (`letters rotate-key --reseal`) seals again under the current key everything an
older key sealed, so that no sealed value needs the older key any more.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from letters.mail import outbox
from letters.models import BlockedSigner, ManageLink, OutboxMessage, PendingSignature, Signature
from letters.record import names
from letters.sealing import Keyring, Unsealable
from letters.tokens import Signer


def older_hashes(keys: Keyring, canonical_email: str) -> list[str]:
    """The address's hashes under each key in OLD_SECRET_KEYS."""
    return [Signer(secret).email_hash(canonical_email) for secret in keys.older]


async def address(
    session: AsyncSession, keys: Keyring, canonical_email: str, current_hash: str
) -> int:
    """Move what an older key's hash of this address names to `current_hash`; how many
    signatures moved. In the caller's transaction (which commits); nothing when no older
    key is listed."""
    if not keys.older:
        return 0
    old = older_hashes(keys, canonical_email)
    signatures = (
        await session.exec(
            select(Signature)
            .where(col(Signature.email_hash).in_(old))
            .order_by(col(Signature.id))
            .with_for_update()
        )
    ).all()
    taken = set(
        (
            await session.exec(
                select(Signature.letter_id).where(Signature.email_hash == current_hash)
            )
        ).all()
    )
    moved = 0
    for signature in signatures:
        if signature.letter_id in taken:
            continue  # counted under both keys already: leave it for the authors to see
        name, title = names.of_signature(keys, signature)
        signature.email_hash = current_hash
        names.set_on_signature(keys, signature, name, title)
        session.add(signature)
        taken.add(signature.letter_id)
        moved += 1
    await session.exec(
        update(PendingSignature)
        .where(col(PendingSignature.email_hash).in_(old))
        .values(email_hash=current_hash)
    )
    await session.exec(
        update(ManageLink)
        .where(col(ManageLink.email_hash).in_(old))
        .values(email_hash=current_hash)
    )
    blocked = (
        await session.exec(select(BlockedSigner).where(col(BlockedSigner.email_hash).in_(old)))
    ).all()
    blocked_now = set(
        (
            await session.exec(
                select(BlockedSigner.letter_id).where(BlockedSigner.email_hash == current_hash)
            )
        ).all()
    )
    for block in blocked:
        if block.letter_id in blocked_now:
            await session.delete(block)
        else:
            block.email_hash = current_hash
            session.add(block)
            blocked_now.add(block.letter_id)
    await session.flush()
    return moved


@dataclass(frozen=True)
class Resealed:
    """What `reseal` sealed again under the current key, and what no active key opened."""

    outbox: int
    signatures: int
    pending: int
    unopened: int


Named = TypeVar("Named", Signature, PendingSignature)


def _reseal_names(
    session: AsyncSession,
    keys: Keyring,
    rows: Sequence[Named],
    read: Callable[[Keyring, Named], tuple[str, str]],
    write: Callable[[Keyring, Named, str, str], None],
) -> tuple[int, int]:
    """Seal again under the current key the hidden names of `rows` an older key sealed:
    `read` opens a row's name and title, `write` seals them on it. (resealed, unopened)"""
    resealed = unopened = 0
    for row in rows:
        if keys.sealed_under_current(row.sealed_name):
            continue
        name, title = read(keys, row)
        if not (name or title):
            unopened += 1
            continue
        write(keys, row, name, title)
        session.add(row)
        resealed += 1
    return resealed, unopened


def _set_on_pending(keys: Keyring, pending: PendingSignature, name: str, title: str) -> None:
    pending.sealed_name = names.seal(keys, name, title, names.of_pending_row(pending.nonce_hash))


async def reseal(session: AsyncSession, keys: Keyring) -> Resealed:
    """Seal again under SECRET_KEY everything sealed under an older key: queued emails,
    hidden names, pending signatures' names. In the caller's transaction (which commits).
    Afterwards no sealed value needs an older key (address hashes still may: see above)."""
    outbox_count = unopened = 0
    for message in (await session.exec(select(OutboxMessage).with_for_update())).all():
        if keys.sealed_under_current(message.sealed):
            continue
        try:
            opened = outbox.message_of(message, keys)
        except Unsealable:
            unopened += 1  # its sender drops it
            continue
        message.sealed = outbox.seal(keys, opened, message.id)
        session.add(message)
        outbox_count += 1
    hidden = select(Signature).where(col(Signature.sealed_name) != "").with_for_update()
    signature_count, not_opened = _reseal_names(
        session,
        keys,
        (await session.exec(hidden)).all(),
        names.of_signature,
        names.set_on_signature,
    )
    unopened += not_opened
    waiting = select(PendingSignature).where(col(PendingSignature.sealed_name) != "")
    pending_count, not_opened = _reseal_names(
        session,
        keys,
        (await session.exec(waiting.with_for_update())).all(),
        names.of_pending,
        _set_on_pending,
    )
    unopened += not_opened
    await session.flush()
    return Resealed(outbox_count, signature_count, pending_count, unopened)
