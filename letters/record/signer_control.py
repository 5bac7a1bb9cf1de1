"""Signer control: change or withdraw a signature through a link emailed to the signer.

Anyone may ask for a manage link by typing an address on the letter page; the answer, and
the work done before it, are the same whether or not that address signed (a sealed job is
queued either way), and the sender emails a link only when it did (`prepare_link`). The
link carries `{"m": manage_link_id, "n": nonce}` signed with its own salt; the database
keeps the nonce's hash. Opening it (GET) only reads. Using it (POST) claims it once
(`UPDATE ... WHERE used_at IS NULL`) in the transaction that makes the change, so either
the change, its counts and its ledger entries are all written and the link is used up, or
nothing is.

Row locks are taken in the order confirm and the authors' moderation use: the signature,
then the letter's row.

A signer who has lost the mailbox (they left the company) keeps control through the
receipt shown when they confirmed: posted back (never in an address), it withdraws the
signature or hides the name (`use_receipt`), with the same answer whether or not it
matched anything.

On a closed letter a signer may still withdraw or hide their name (see `CLOSED_ALLOWS`):
whoever signed must always be able to take their name off a public record, and the ledger
records each such change with its date, so the count at closing can still be recomputed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from letters import i18n
from letters.domains import match_domain, refusal_message
from letters.forms import Details, FieldError, Requester, parse_email
from letters.mail import outbox
from letters.mail.backend import Message
from letters.mail.compose import Compose
from letters.models import (
    AllowedDomain,
    LedgerKind,
    Letter,
    LetterStatus,
    ManageLink,
    OrganizationCount,
    Signature,
    utcnow,
)
from letters.ratelimit import Limit, hit
from letters.record import counting, founding, ledger, links, names, rekey, reveal
from letters.record.counting import SignatureGone
from letters.record.public import get_public_letter
from letters.record.signing import LetterClosed
from letters.sealing import Keyring
from letters.settings import Settings
from letters.tokens import LinkUsed, Signer


class Action(StrEnum):
    withdraw = "withdraw"  # remove the signature: counts -1
    hide = "hide"  # stay counted, hide the name and delete it (and the title) from our records
    update = "update"  # change name, title, shown or hidden, reveal threshold


# What a closed letter still allows: only taking information off the public record.
CLOSED_ALLOWS = (Action.withdraw, Action.hide)


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


# The job a manage-link request queues (letters.mail.outbox.Job): its sender emails a link
# only if the address signed the letter (`prepare_link`).
MANAGE_LINK_JOB = "manage-link"


async def request_link(
    session: AsyncSession,
    *,
    slug: str,
    email: Any,
    requester: Requester,
    now: datetime | None = None,
    letter: Letter | None = None,
) -> int:
    """Queue a manage link for an address, emailed only if it signed the letter. Commits.

    The request does the same work whether or not the address signed: the checks, the rate
    limits and one sealed job in the outbox. Whether a link is made and sent is decided by
    the sender (`prepare_link`), after the answer has gone, so neither the answer nor its
    timing tells who signed. `letter` is a draft's, read through its founding round's link
    (else the public letter at `slug` is read). Returns the job's outbox id. Raises
    LetterNotFound, FieldError or RateLimited.
    """
    now = now or utcnow()
    signer, settings = requester.signer, requester.settings
    letter = letter or await get_public_letter(session, slug)
    address = parse_email(email)
    rules = (
        await session.exec(select(AllowedDomain).where(AllowedDomain.letter_id == letter.id))
    ).all()
    if match_domain(address.domain, rules) is None:
        raise FieldError("email", refusal_message(address.domain, rules), "domain_not_allowed")
    email_hash = signer.email_hash(address.canonical)
    # Limits of their own, per letter: requests for sign links (anyone can make them for
    # any address) never use up the owner's manage links.
    await hit(
        session,
        [
            Limit(f"manage:{letter.id}:{email_hash[:40]}", settings.limit_per_address),
            Limit("ip:" + requester.ip_key(), settings.limit_per_ip),
            Limit("dom:" + signer.key_hash("domain", address.domain), settings.limit_per_domain),
        ],
        settings.limit_window,
        now,
    )
    # After a key change, what this address's older hash names moves to this one.
    await rekey.address(session, settings.keys, address.canonical, email_hash)
    args = {"letter_id": letter.id, "email": address.email}
    return await outbox.queue_job(session, settings.keys, MANAGE_LINK_JOB, args, now)


async def prepare_link(
    session: AsyncSession,
    args: dict[str, Any],
    signer: Signer,
    settings: Settings,
    compose: Compose,
    now: datetime | None = None,
) -> Message | None:
    """In the sender: the email with a new manage link if the address signed the letter,
    else None (nothing is written then). Commits the link's row."""
    now = now or utcnow()
    address = parse_email(args["email"])
    email_hash = signer.email_hash(address.canonical)
    signed = (
        await session.exec(
            select(Signature.id).where(
                Signature.letter_id == args["letter_id"], Signature.email_hash == email_hash
            )
        )
    ).first()
    if signed is None:
        await session.rollback()
        return None
    _, token = await links.issue(
        session,
        signer,
        links.MANAGE,
        now,
        settings.link_max_age,
        letter_id=args["letter_id"],
        email_hash=email_hash,
    )
    await session.commit()
    with i18n.using(args["language"]):
        return compose(address.email, token)


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
    if signature.founding:
        return await founding.organization_count(
            session, signature.letter_id, signature.organization
        )
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
    link = await links.find(session, signer, links.MANAGE, token, settings.link_max_age, utcnow())
    letter = await session.get(Letter, link.letter_id)
    # Of drafts, only one with an open founding round has signatures to manage.
    if letter is None or (
        letter.status == LetterStatus.draft
        and not founding.is_open(await founding.round_of(session, link.letter_id))
    ):
        raise links.invalid(links.MANAGE)
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
    if view.letter.status == LetterStatus.closed and action not in CLOSED_ALLOWS:
        raise LetterClosed
    if view.signature is None:
        raise SignatureGone
    link, letter_id = view.link, view.letter.id
    assert letter_id is not None
    await links.claim(session, links.MANAGE, link, now)
    signature = await _signature_for(session, link, lock=True)
    if signature is None:
        await session.rollback()
        raise SignatureGone
    if signature.founding:
        # Not counted yet (its row is locked: launch waits for this change).
        try:
            kept = await founding.manage(
                session, settings.keys, signature, action == Action.withdraw, details
            )
        except founding.Unchanged:
            await session.rollback()
            raise NothingToChange from None
        await session.commit()
        return Result(letter=view.letter, action=action, signature=kept)
    # Then the letter's row (see the module docstring), reading its status again.
    status = (
        await session.exec(
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
            await counting.uncount(session, signature, LedgerKind.withdrawn, now)
            result: tuple[Signature | None, bool] = (None, False)
        else:
            if action == Action.hide:
                details = Details(name="", title="", show_name=False, reveal_at=None)
            assert details is not None
            result = await _change(session, signature, details, settings.keys, now)
    except NothingToChange:
        await session.rollback()
        raise
    await session.commit()
    letter = await session.get(Letter, letter_id, populate_existing=True)
    assert letter is not None
    return Result(letter=letter, action=action, signature=result[0], revealed=result[1])


async def _change(
    session: AsyncSession, signature: Signature, details: Details, keys: Keyring, now: datetime
) -> tuple[Signature, bool]:
    """Apply new details, moving the named/hidden counts and the ledger as confirm does."""
    name, title = names.of_signature(keys, signature)
    before = (signature.show_name, name, title, signature.reveal_at)
    after = (details.show_name, details.name, details.title, details.reveal_at)
    if before == after:
        raise NothingToChange
    # The same change a second confirmation makes (it keeps a name the authors hid hidden).
    await counting.show_as(
        session,
        signature,
        show_name=details.show_name,
        name=details.name,
        title=details.title,
        reveal_at=details.reveal_at,
        now=now,
        keys=keys,
    )
    await reveal.release(
        session, keys, signature.letter_id, signature.organization, now, signature.email_hash
    )
    return signature, signature.show_name and not details.show_name


# Receipt uses per IP address (or IPv6 /64) per window. A receipt is 128 random bits, so
# this is not what keeps them from being guessed; it keeps the form from being a load.
RECEIPT_TRIES_PER_IP = 30


async def use_receipt(
    session: AsyncSession,
    *,
    slug: str,
    receipt: str,
    action: Action,
    requester: Requester,
    now: datetime | None = None,
) -> Letter | None:
    """Withdraw the signature a receipt belongs to, or hide its name. Commits.

    Returns the letter after the change, or None when the receipt matches no signature of
    this letter or there was nothing to change; callers answer both the same way.
    Raises LetterNotFound or RateLimited; `action` is withdraw or hide (CLOSED_ALLOWS), so
    this works on a closed letter too.
    """
    if action not in CLOSED_ALLOWS:
        raise ValueError(action)
    now = now or utcnow()
    letter = await get_public_letter(session, slug)
    settings = requester.settings
    ip = "receipt:" + requester.ip_key()
    await hit(session, [Limit(ip, RECEIPT_TRIES_PER_IP)], settings.limit_window, now)
    await session.commit()
    # The signature's row, then the letter's (the module's lock order).
    signature = (
        await session.exec(
            select(Signature)
            .where(
                Signature.letter_id == letter.id,
                Signature.commitment == ledger.commitment(receipt),
            )
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).first()
    if signature is None:
        await session.rollback()
        return None
    await session.exec(update(Letter).where(col(Letter.id) == letter.id).values(updated_at=now))
    if action == Action.withdraw:
        await counting.uncount(session, signature, LedgerKind.withdrawn, now)
    else:
        try:
            hidden = Details(name="", title="", show_name=False, reveal_at=None)
            await _change(session, signature, hidden, settings.keys, now)
        except NothingToChange:
            await session.rollback()
            return None
    await session.commit()
    return await session.get(Letter, letter.id, populate_existing=True)
