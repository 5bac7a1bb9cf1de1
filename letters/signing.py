"""Sign and confirm: the transactions that matter most.

Counting rule: a letter's counters and its organization counts change only inside the
transaction that turns a pending signature into a verified one, guarded so that a pending
signature is used once (`UPDATE ... WHERE used_at IS NULL`) and a person is counted once
(`INSERT ... ON CONFLICT (letter_id, email_hash) DO NOTHING`). Either both the signature and
its count are written, or neither is, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from letters import ledger, outbox, reveal
from letters.authors import blocks, milestones
from letters.domains import match_domain, refusal_message
from letters.forms import FieldError, SignatureInput
from letters.i18n import gettext
from letters.mail import Message
from letters.models import (
    AllowedDomain,
    DailyCount,
    LedgerKind,
    Letter,
    LetterStatus,
    OrganizationCount,
    PendingSignature,
    Signature,
    utcnow,
)
from letters.public import get_public_letter
from letters.ratelimit import Limit, hit, ip_prefix
from letters.settings import Settings
from letters.tokens import LinkUsed, Signer, TokenError, hash_nonce, new_nonce


class LetterClosed(Exception):
    """The letter no longer takes signatures."""


@dataclass(frozen=True)
class LinkToSend:
    """The magic link of a new pending signature; never logged.

    `outbox_id` is the queued email carrying it (None when no `compose` was given).
    """

    email: str
    token: str
    letter: Letter
    outbox_id: int | None = None


# Builds the email for (address, token); see letters.views.common.signing_email.
Compose = Callable[[str, str], Message]


@dataclass(frozen=True)
class Confirmation:
    letter: Letter
    outcome: str  # "verified": newly counted; "updated": already counted, details updated
    signature: Signature
    # Shown once to a new signer, never stored: its hash names their ledger entry.
    receipt: str | None = None


def _insert_for(session: AsyncSession) -> Any:
    dialect = session.bind.dialect.name if session.bind else "sqlite"
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


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
        raise LetterClosed
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
    nonce = new_nonce()
    pending = PendingSignature(
        letter_id=letter.id,  # type: ignore[arg-type]
        email_hash=email_hash,
        domain=form.address.domain,
        organization=rule.organization,
        name=form.name,
        title=form.title,
        show_name=form.show_name,
        reveal_at=form.reveal_at,
        nonce_hash=hash_nonce(nonce),
        created_at=now,
        expires_at=now + timedelta(seconds=settings.link_max_age),
    )
    session.add(pending)
    await session.flush()
    token = signer.make_link_token(pending.id, nonce)  # type: ignore[arg-type]
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
    claims = signer.read_link_token(token, settings.link_max_age)
    pending = await session.get(PendingSignature, claims.pending_id)
    if pending is None or pending.nonce_hash != hash_nonce(claims.nonce):
        raise TokenError("invalid_token", gettext("This link is not valid."))
    letter = await session.get(Letter, pending.letter_id)
    if letter is None or letter.status == LetterStatus.draft:
        raise TokenError("invalid_token", gettext("This link is not valid."))
    if pending.used_at is None and pending.expires_at <= utcnow():
        raise TokenError("expired_token", gettext("This link has expired."))
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
        raise LetterClosed
    pending = view.pending
    claimed = await session.exec(  # type: ignore[call-overload]
        update(PendingSignature)
        .where(
            col(PendingSignature.id) == pending.id,
            col(PendingSignature.used_at).is_(None),
            col(PendingSignature.expires_at) > now,
        )
        .values(used_at=now)
    )
    if claimed.rowcount != 1:
        expired = pending.expires_at <= now  # read before rollback expires the object
        await session.rollback()
        if expired:
            raise TokenError("expired_token", gettext("This link has expired."))
        raise LinkUsed

    insert = _insert_for(session)
    signature_table = Signature.__table__  # type: ignore[attr-defined]
    receipt = ledger.new_receipt()
    inserted = (
        await session.exec(  # type: ignore[call-overload]
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
                commitment=ledger.commitment(receipt),
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
        await count(session, pending.letter_id, pending.organization, pending.show_name, now)
        await ledger.append(
            session,
            pending.letter_id,
            LedgerKind.signed,
            organization=pending.organization,
            named=pending.show_name,
            name=pending.name,
            title=pending.title,
            commitment=ledger.commitment(receipt),
            now=now,
        )
        # Round counts and the goal email the authors, once each (letters.authors.milestones).
        await milestones.check(session, pending.letter_id, settings, now)
        outcome = "verified"
    else:
        await _update_existing(session, pending, now)
        outcome = "updated"
        receipt = None
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
    await session.exec(  # type: ignore[call-overload]
        update(Letter)
        .where(col(Letter.id) == letter_id)
        .values(
            verified_count=col(Letter.verified_count) + delta,
            named_count=col(Letter.named_count) + (delta if named else 0),
            hidden_count=col(Letter.hidden_count) + (0 if named else delta),
            updated_at=now,
        )
    )
    insert = _insert_for(session)
    table = OrganizationCount.__table__  # type: ignore[attr-defined]
    await session.exec(  # type: ignore[call-overload]
        insert(table)
        .values(letter_id=letter_id, organization=organization, count=delta)
        .on_conflict_do_update(
            index_elements=[table.c.letter_id, table.c.organization],
            set_={"count": table.c.count + delta},
        )
    )
    daily = DailyCount.__table__  # type: ignore[attr-defined]
    await session.exec(  # type: ignore[call-overload]
        insert(daily)
        .values(
            letter_id=letter_id, day=now.date().isoformat(), organization=organization, count=delta
        )
        .on_conflict_do_update(
            index_elements=[daily.c.letter_id, daily.c.day, daily.c.organization],
            set_={"count": daily.c.count + delta},
        )
    )


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
    await show_as(
        session,
        signature,
        show_name=pending.show_name,
        name=pending.name,
        title=pending.title,
        reveal_at=pending.reveal_at,
        now=now,
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
) -> int:
    """Change how a counted signature is shown, in the caller's transaction, which must
    hold the signature's row lock. Moves the named/hidden counts, blanks a name that stops
    being public in the ledger and records the change there. Returns the named shift.

    Used by a second confirmation (above) and by manage links (letters.manage).
    """
    if signature.name_hidden_by_authors:
        # The authors hid this name: nothing the signer does can show it, or keep it.
        show_name, name, title, reveal_at = False, "", "", None
    shift = 0
    if signature.show_name != show_name:
        shift = 1 if show_name else -1
    # updated_at moves even when only a name or title changed: caches key on it.
    await session.exec(  # type: ignore[call-overload]
        update(Letter)
        .where(col(Letter.id) == signature.letter_id)
        .values(
            named_count=col(Letter.named_count) + shift,
            hidden_count=col(Letter.hidden_count) - shift,
            updated_at=now,
        )
    )
    changed = (signature.show_name, signature.name, signature.title) != (show_name, name, title)
    if changed and signature.show_name:
        # The name shown until now stops being public (or is replaced): blank it.
        await ledger.redact_names(session, signature.letter_id, signature.commitment)
    signature.name = name
    signature.title = title
    signature.show_name = show_name
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
