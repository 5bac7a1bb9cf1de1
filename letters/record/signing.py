"""Sign and confirm: the transactions that matter most.

Counting rule: a letter's counters and its organization counts change only inside the
transaction that turns a pending signature into a verified one, guarded so that a pending
signature is used once (`UPDATE ... WHERE used_at IS NULL`) and a person is counted once
(`INSERT ... ON CONFLICT (letter_id, email_hash) DO NOTHING`). Either both the signature and
its count are written, or neither is, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from letters.db import dialect_insert, table_of
from letters.domains import match_domain, refusal_message
from letters.forms import FieldError, SignatureInput
from letters.mail import outbox
from letters.mail.compose import Compose
from letters.models import (
    AllowedDomain,
    LedgerKind,
    Letter,
    LetterStatus,
    PendingSignature,
    Signature,
    utcnow,
)
from letters.ratelimit import Limit, hit, ip_prefix
from letters.record import blocks, counting, ledger, links, milestones, reveal
from letters.record.public import get_public_letter
from letters.settings import Settings
from letters.tokens import LinkUsed, Signer


class LetterClosed(Exception):
    """The letter no longer takes signatures (or, for a signer's change, no longer allows it)."""

    def __init__(self, letter_id: int | None = None) -> None:
        super().__init__("letter closed")
        self.letter_id = letter_id


@dataclass(frozen=True)
class LinkToSend:
    """The magic link of a new pending signature; never logged.

    `outbox_id` is the queued email carrying it (None when no `compose` was given).
    """

    email: str
    token: str
    letter: Letter
    outbox_id: int | None = None


@dataclass(frozen=True)
class Confirmation:
    letter: Letter
    outcome: str  # "verified": newly counted; "updated": already counted, details updated
    signature: Signature
    # Shown once to a new signer, never stored: its hash names their ledger entry.
    receipt: str | None = None


async def request_signature(
    session: AsyncSession,
    *,
    slug: str,
    data: dict[str, Any],
    client_host: str | None,
    signer: Signer,
    settings: Settings,
    compose: Compose | None = None,
    now: datetime | None = None,
) -> LinkToSend:
    """Record a pending signature and queue the email with its link, in one transaction.

    Raises LetterNotFound, LetterClosed, FieldError or RateLimited; in each case nothing
    is written. (Rate-limit counts are committed just before the pending signature, in a
    transaction of their own.) The outcome is the same whether or not the address already
    signed.
    """
    now = now or utcnow()
    letter = await get_public_letter(session, slug)
    if letter.status != LetterStatus.published:
        raise LetterClosed(letter.id)
    form = SignatureInput.parse(data, ask_title=letter.ask_title)
    rules = (
        await session.exec(select(AllowedDomain).where(AllowedDomain.letter_id == letter.id))
    ).all()
    rule = match_domain(form.address.domain, rules)
    if rule is None:
        raise FieldError("email", refusal_message(form.address.domain, rules), "domain_not_allowed")
    email_hash = signer.email_hash(form.address.canonical)
    window = settings.limit_window
    await hit(
        session,
        [
            # Per person across all letters: a busy instance cannot multiply one inbox's mail.
            Limit(f"addr:{email_hash[:40]}", settings.limit_per_address),
            Limit("ip:" + signer.key_hash("ip", ip_prefix(client_host)), settings.limit_per_ip),
            Limit(
                "dom:" + signer.key_hash("domain", form.address.domain), settings.limit_per_domain
            ),
        ],
        window,
        now,
    )
    # Commit the counts at once: the per-domain and per-IP rows are shared by everyone
    # from one company or office, and holding their locks for the rest of this request
    # would make those signers queue behind each other (measured in bench/storm.py).
    await session.commit()
    _, token = await links.issue(
        session,
        signer,
        links.SIGNER,
        now,
        settings.link_max_age,
        letter_id=letter.id,
        email_hash=email_hash,
        domain=form.address.domain,
        organization=rule.organization,
        name=form.name,
        title=form.title,
        show_name=form.show_name,
        reveal_at=form.reveal_at,
    )
    outbox_id = None
    if compose is not None:
        outbox_id = await outbox.enqueue(session, compose(form.address.email, token), now)
    await session.commit()
    return LinkToSend(email=form.address.email, token=token, letter=letter, outbox_id=outbox_id)


@dataclass(frozen=True)
class PendingView:
    """What the confirmation page shows before the signer presses the button."""

    letter: Letter
    pending: PendingSignature
    used: bool


async def inspect_link(
    session: AsyncSession, token: str, signer: Signer, settings: Settings
) -> PendingView:
    """Read a magic link without using it (safe for GET and for mail scanners)."""
    pending = await links.find(
        session, signer, links.SIGNER, token, settings.link_max_age, utcnow()
    )
    letter = await session.get(Letter, pending.letter_id)
    if letter is None or letter.status == LetterStatus.draft:
        raise links.invalid(links.SIGNER)
    return PendingView(letter=letter, pending=pending, used=pending.used_at is not None)


async def confirm(
    session: AsyncSession,
    token: str,
    signer: Signer,
    settings: Settings,
    now: datetime | None = None,
) -> Confirmation:
    """Use a magic link: verify (and count) the signature, once. Commits.

    Raises TokenError (invalid, expired or already used) or LetterClosed.
    """
    now = now or utcnow()
    view = await inspect_link(session, token, signer, settings)
    if view.used:
        raise LinkUsed
    if view.letter.status != LetterStatus.published:
        raise LetterClosed(view.letter.id)
    pending = view.pending
    await links.claim(session, links.SIGNER, pending, now)

    insert = dialect_insert(session)
    signature_table = table_of(Signature)
    new_receipt = ledger.new_receipt()
    commitment = ledger.commitment(new_receipt)
    inserted = (
        await session.exec(
            insert(signature_table)
            .values(
                letter_id=pending.letter_id,
                email_hash=pending.email_hash,
                domain=pending.domain,
                organization=pending.organization,
                name=pending.name,
                title=pending.title,
                show_name=pending.show_name,
                reveal_at=None if pending.show_name else pending.reveal_at,
                commitment=commitment,
                verified_at=now,
                updated_at=now,
                # The version of the text this signature confirms (read in this statement).
                letter_version=select(Letter.version)
                .where(Letter.id == pending.letter_id)
                .scalar_subquery(),
            )
            .on_conflict_do_nothing(
                index_elements=[signature_table.c.letter_id, signature_table.c.email_hash]
            )
            .returning(signature_table.c.id)
        )
    ).scalar_one_or_none()

    if inserted is not None:
        # The authors invalidated this person's signature: it cannot be confirmed back in.
        if await blocks.is_blocked(session, pending.letter_id, pending.email_hash):
            await session.rollback()
            raise blocks.SignatureRemoved
        await counting.count(
            session, pending.letter_id, pending.organization, pending.show_name, now
        )
        await ledger.append(
            session,
            pending.letter_id,
            LedgerKind.signed,
            organization=pending.organization,
            named=pending.show_name,
            name=pending.name,
            title=pending.title,
            commitment=commitment,
            now=now,
        )
        # Round counts and the goal email the authors, once each (letters.record.milestones).
        await milestones.check(session, pending.letter_id, settings, now)
        outcome, receipt = "verified", new_receipt
    else:
        await _update_existing(session, pending, now)
        outcome, receipt = "updated", None
    # Names waiting for this organization's count to reach their threshold: shown together.
    await reveal.release(session, pending.letter_id, pending.organization, now, pending.email_hash)
    await session.commit()
    signature = (
        await session.exec(
            select(Signature).where(
                Signature.letter_id == pending.letter_id,
                Signature.email_hash == pending.email_hash,
            )
        )
    ).one()
    letter = await session.get(Letter, pending.letter_id, populate_existing=True)
    assert letter is not None
    return Confirmation(letter=letter, outcome=outcome, signature=signature, receipt=receipt)


async def _update_existing(session: AsyncSession, pending: PendingSignature, now: datetime) -> None:
    """A person who already signed confirmed again: take their new details, count nothing new.

    The row is locked (`FOR UPDATE` on PostgreSQL; SQLite's transaction already holds the
    write lock) so two concurrent re-confirmations cannot both move a named/hidden count.
    """
    signature = (
        await session.exec(
            select(Signature)
            .where(
                Signature.letter_id == pending.letter_id,
                Signature.email_hash == pending.email_hash,
            )
            .with_for_update()
        )
    ).one()
    # Confirming again confirms the text as it is now.
    signature.letter_version = (
        await session.exec(select(Letter.version).where(Letter.id == pending.letter_id))
    ).one()
    await counting.show_as(
        session,
        signature,
        show_name=pending.show_name,
        name=pending.name,
        title=pending.title,
        reveal_at=pending.reveal_at,
        now=now,
    )
