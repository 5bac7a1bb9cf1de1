"""Signer control: change or withdraw a signature through a link emailed to the signer.

Anyone may ask for a manage link by typing an address on the letter page; the answer is
the same whether or not that address signed, and a link is emailed only when it did. The
link carries `{"m": manage_link_id, "n": nonce}` signed with its own salt; the database
keeps the nonce's hash. Opening it (GET) only reads. Using it (POST) claims it once
(`UPDATE ... WHERE used_at IS NULL`) in the transaction that makes the change, so either
the change, its counts and its ledger entries are all written and the link is used up, or
nothing is.

Row locks are taken in the order confirm and the authors' moderation use: the signature,
then the letter's row.

On a closed letter a signer may still withdraw or hide their name (see `CLOSED_ALLOWS`):
whoever signed must always be able to take their name off a public record, and the ledger
records each such change with its date, so the count at closing can still be recomputed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from itsdangerous import BadSignature, SignatureExpired
from sqlalchemy import delete, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from letters import ledger, outbox, reveal
from letters.domains import match_domain, refusal_message
from letters.forms import Details, FieldError, parse_email
from letters.i18n import N_, gettext
from letters.models import (
    AllowedDomain,
    LedgerKind,
    Letter,
    LetterStatus,
    ManageLink,
    OrganizationCount,
    PendingSignature,
    Signature,
    utcnow,
)
from letters.public import get_public_letter
from letters.ratelimit import Limit, hit, ip_prefix
from letters.settings import Settings
from letters.signing import Compose, LetterClosed, LinkToSend, count, show_as
from letters.tokens import LinkUsed, Signer, TokenError, hash_nonce, new_nonce

MANAGE_LINK = "manage-link"
INVALID = N_("This link is not valid.")
EXPIRED = N_("This link has expired.")


class Action(StrEnum):
    withdraw = "withdraw"  # remove the signature: counts -1
    hide = "hide"  # stay counted, hide the name and delete it (and the title) from our records
    update = "update"  # change name, title, shown or hidden, reveal threshold


# What a closed letter still allows: only taking information off the public record.
CLOSED_ALLOWS = (Action.withdraw, Action.hide)


class SignatureGone(Exception):
    """The signature this link was for has been withdrawn."""


class NothingToChange(Exception):
    """The requested change is how the signature already is."""


@dataclass(frozen=True)
class ManageView:
    """What a manage link shows before anything is pressed."""

    letter: Letter
    link: ManageLink
    signature: Signature | None  # None: withdrawn since the link was sent
    organization_count: int
    used: bool


@dataclass(frozen=True)
class Result:
    letter: Letter
    action: Action
    signature: Signature | None  # None after a withdrawal
    revealed: bool = False  # the new threshold was already reached: the name is shown now


def make_token(signer: Signer, link_id: int, nonce: str) -> str:
    return signer.timed(MANAGE_LINK).dumps({"m": link_id, "n": nonce})


def read_token(signer: Signer, token: str, max_age: int) -> tuple[int, str]:
    """(manage link id, nonce) from a token; TokenError if it is not one of ours or expired."""
    if not token.isascii():
        raise TokenError("invalid_token", gettext(INVALID))
    try:
        data: Any = signer.timed(MANAGE_LINK).loads(token, max_age=max_age)
    except SignatureExpired:
        raise TokenError("expired_token", gettext(EXPIRED)) from None
    except BadSignature:
        raise TokenError("invalid_token", gettext(INVALID)) from None
    if (
        not isinstance(data, dict)
        or type(data.get("m")) is not int
        or not isinstance(data.get("n"), str)
    ):
        raise TokenError("invalid_token", gettext(INVALID))
    return data["m"], data["n"]


async def request_link(
    session: AsyncSession,
    *,
    slug: str,
    email: Any,
    client_host: str | None,
    signer: Signer,
    settings: Settings,
    compose: Compose,
    now: datetime | None = None,
) -> LinkToSend | None:
    """Email a manage link if this address signed the letter. Commits.

    Returns the link to deliver, or None when the address has not signed; callers must
    answer both the same way. Raises LetterNotFound, FieldError or RateLimited.
    """
    now = now or utcnow()
    letter = await get_public_letter(session, slug)
    address = parse_email(email)
    rules = (
        await session.exec(select(AllowedDomain).where(AllowedDomain.letter_id == letter.id))
    ).all()
    if match_domain(address.domain, rules) is None:
        raise FieldError("email", refusal_message(address.domain, rules), "domain_not_allowed")
    email_hash = signer.email_hash(address.canonical)
    # The same limits, under the same keys, as signing: one inbox gets no more mail by
    # mixing the two, and the limit is hit whether or not the address signed.
    await hit(
        session,
        [
            Limit(f"addr:{email_hash[:40]}", settings.limit_per_address),
            Limit("ip:" + signer.key_hash("ip", ip_prefix(client_host)), settings.limit_per_ip),
            Limit("dom:" + signer.key_hash("domain", address.domain), settings.limit_per_domain),
        ],
        settings.limit_window,
        now,
    )
    await session.commit()
    signed = (
        await session.exec(
            select(Signature.id).where(
                Signature.letter_id == letter.id, Signature.email_hash == email_hash
            )
        )
    ).first()
    if signed is None:
        await session.rollback()
        return None
    nonce = new_nonce()
    link = ManageLink(
        letter_id=letter.id,  # type: ignore[arg-type]
        email_hash=email_hash,
        nonce_hash=hash_nonce(nonce),
        created_at=now,
        expires_at=now + timedelta(seconds=settings.link_max_age),
    )
    session.add(link)
    await session.flush()
    token = make_token(signer, link.id, nonce)  # type: ignore[arg-type]
    outbox_id = await outbox.enqueue(session, compose(address.email, token), now)
    await session.commit()
    return LinkToSend(email=address.email, token=token, letter=letter, outbox_id=outbox_id)


async def _signature_for(
    session: AsyncSession, link: ManageLink, lock: bool = False
) -> Signature | None:
    """The signature a link manages: the one that existed when the link was made."""
    statement = select(Signature).where(
        Signature.letter_id == link.letter_id,
        Signature.email_hash == link.email_hash,
        col(Signature.verified_at) <= link.created_at,
    )
    if lock:
        statement = statement.with_for_update()
    return (await session.exec(statement.execution_options(populate_existing=True))).first()


async def _organization_count(session: AsyncSession, signature: Signature | None) -> int:
    if signature is None:
        return 0
    value = (
        await session.exec(
            select(OrganizationCount.count).where(
                OrganizationCount.letter_id == signature.letter_id,
                OrganizationCount.organization == signature.organization,
            )
        )
    ).first()
    return int(value or 0)


async def inspect(
    session: AsyncSession, token: str, signer: Signer, settings: Settings
) -> ManageView:
    """Read a manage link without using it (safe for GET and for mail scanners)."""
    link_id, nonce = read_token(signer, token, settings.link_max_age)
    link = await session.get(ManageLink, link_id)
    if link is None or link.nonce_hash != hash_nonce(nonce):
        raise TokenError("invalid_token", gettext(INVALID))
    letter = await session.get(Letter, link.letter_id)
    if letter is None or letter.status == LetterStatus.draft:
        raise TokenError("invalid_token", gettext(INVALID))
    if link.used_at is None and link.expires_at <= utcnow():
        raise TokenError("expired_token", gettext(EXPIRED))
    signature = await _signature_for(session, link)
    return ManageView(
        letter=letter,
        link=link,
        signature=signature,
        organization_count=await _organization_count(session, signature),
        used=link.used_at is not None,
    )


async def apply(
    session: AsyncSession,
    token: str,
    action: Action,
    details: Details | None,
    signer: Signer,
    settings: Settings,
    now: datetime | None = None,
) -> Result:
    """Use a manage link for one action (`details` for Action.update). Commits.

    Raises TokenError (invalid, expired or used), LetterClosed (a change a closed letter
    refuses), SignatureGone or NothingToChange; in each case nothing is written and the
    link stays usable unless it was already used.
    """
    now = now or utcnow()
    view = await inspect(session, token, signer, settings)
    if view.used:
        raise LinkUsed
    if view.letter.status != LetterStatus.published and action not in CLOSED_ALLOWS:
        raise LetterClosed
    if view.signature is None:
        raise SignatureGone
    link, letter_id = view.link, view.letter.id
    assert letter_id is not None
    claimed = await session.exec(  # type: ignore[call-overload]
        update(ManageLink)
        .where(
            col(ManageLink.id) == link.id,
            col(ManageLink.used_at).is_(None),
            col(ManageLink.expires_at) > now,
        )
        .values(used_at=now)
    )
    if claimed.rowcount != 1:
        expired = link.expires_at <= now
        await session.rollback()
        if expired:
            raise TokenError("expired_token", gettext(EXPIRED))
        raise LinkUsed
    signature = await _signature_for(session, link, lock=True)
    if signature is None:
        await session.rollback()
        raise SignatureGone
    # Then the letter's row (see the module docstring), reading its status again.
    status = (
        await session.exec(  # type: ignore[call-overload]
            update(Letter)
            .where(col(Letter.id) == letter_id)
            .values(updated_at=now)
            .returning(col(Letter.status))
        )
    ).scalar_one()
    if status != LetterStatus.published and action not in CLOSED_ALLOWS:
        await session.rollback()
        raise LetterClosed
    try:
        if action == Action.withdraw:
            result = await _withdraw(session, signature, now)
        else:
            if action == Action.hide:
                details = Details(name="", title="", show_name=False, reveal_at=None)
            assert details is not None
            result = await _change(session, signature, details, now)
    except NothingToChange:
        await session.rollback()
        raise
    await session.commit()
    letter = await session.get(Letter, letter_id, populate_existing=True)
    assert letter is not None
    return Result(letter=letter, action=action, signature=result[0], revealed=result[1])


async def _withdraw(
    session: AsyncSession, signature: Signature, now: datetime
) -> tuple[None, bool]:
    """Delete the signature, uncount it, blank its names in the ledger, record the withdrawal.

    Their pending signing links for this letter go too (they hold a name as typed). Their
    manage links stay until they expire (they hold only hashes), so that a second link
    can say the signature was withdrawn rather than that it is not valid.
    """
    letter_id = signature.letter_id
    deleted = await session.exec(  # type: ignore[call-overload]
        delete(Signature).where(col(Signature.id) == signature.id)
    )
    if deleted.rowcount != 1:
        raise SignatureGone
    await count(session, letter_id, signature.organization, signature.show_name, now, delta=-1)
    await ledger.redact_names(session, letter_id, signature.commitment)
    await ledger.append(
        session,
        letter_id,
        LedgerKind.withdrawn,
        organization=signature.organization,
        named=False,  # as for invalidations: an entry that uncounts carries no name
        name="",
        title="",
        commitment=signature.commitment,
        now=now,
    )
    await session.exec(  # type: ignore[call-overload]
        delete(PendingSignature).where(
            col(PendingSignature.letter_id) == letter_id,
            col(PendingSignature.email_hash) == signature.email_hash,
        )
    )
    return None, False


async def _change(
    session: AsyncSession, signature: Signature, details: Details, now: datetime
) -> tuple[Signature, bool]:
    """Apply new details, moving the named/hidden counts and the ledger as confirm does."""
    before = (signature.show_name, signature.name, signature.title, signature.reveal_at)
    after = (details.show_name, details.name, details.title, details.reveal_at)
    if before == after:
        raise NothingToChange
    # The same change a second confirmation makes (it keeps a name the authors hid hidden).
    await show_as(
        session,
        signature,
        show_name=details.show_name,
        name=details.name,
        title=details.title,
        reveal_at=details.reveal_at,
        now=now,
    )
    await reveal.release(
        session, signature.letter_id, signature.organization, now, signature.email_hash
    )
    return signature, signature.show_name and not details.show_name
