"""Founding rounds: a draft signed through a secret link, counted together at launch.

While a round is open the letter stays a draft (404 to everyone else, in no list, feed,
sitemap or API). People sign through the round's link exactly as they will publicly
(same form, domain check, magic link, hidden by default, reveal thresholds), and their
confirmation writes a `Signature` marked `founding`: no counter moves, no ledger entry is
written, no reveal threshold or milestone is evaluated.

At launch, in one transaction, rows are locked in this order: the round's row (a founding
confirmation locks it too, and then finds the round launched and confirms as the public
letter's instead), the founding signatures, which lose their mark (a manage link locks
its signature first and touches no other row, so a change either happened before or
finds it counted), then the letter's row, which becomes public as version 1. Reveal
thresholds are evaluated on the final counts (names waiting for N colleagues are shown
together, from the start), and each signature is counted and appended to the ledger in
the order it was confirmed, all dated the launch day. Milestone emails start then.

The round's link is the round's id and nonce, signed with the secret key under its own
salt (a row alone makes no link); a new link replaces the nonce.
"""

from __future__ import annotations

import secrets
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from itsdangerous import BadSignature
from sqlalchemy import delete, update
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from letters.db import dialect_insert, table_of
from letters.forms import Details
from letters.models import (
    AllowedDomain,
    FoundingRound,
    LedgerKind,
    Letter,
    LetterStatus,
    LetterVersion,
    PendingSignature,
    Signature,
    utcnow,
)
from letters.record import counting, ledger, links, milestones, names
from letters.record.public import LetterNotFound
from letters.sealing import Keyring
from letters.settings import Settings
from letters.tokens import LinkUsed, Signer

SALT = "founding-link"
MAX_TOKEN = 300


def new_nonce() -> str:
    return secrets.token_urlsafe(24)


def make_token(signer: Signer, founding: FoundingRound) -> str:
    return str(signer.untimed(SALT).dumps({"r": founding.id, "n": founding.link_nonce}))


def _read_token(signer: Signer, token: str) -> tuple[int, str]:
    """(round id, nonce); LetterNotFound for anything that is not one of our links."""
    if not isinstance(token, str) or not token.isascii() or len(token) > MAX_TOKEN:
        raise LetterNotFound
    try:
        data: Any = signer.untimed(SALT).loads(token)
    except BadSignature:
        raise LetterNotFound from None
    if not isinstance(data, dict) or type(data.get("r")) is not int:
        raise LetterNotFound
    if not isinstance(data.get("n"), str):
        raise LetterNotFound
    return data["r"], data["n"]


def is_open(founding: FoundingRound | None) -> bool:
    return founding is not None and founding.closed_at is None and founding.launched_at is None


@dataclass(frozen=True)
class OpenRound:
    """A round as its link opens it: the draft and its allowed domains."""

    founding: FoundingRound
    letter: Letter
    domains: list[AllowedDomain]


async def open_round_of(session: AsyncSession, signer: Signer, token: str) -> OpenRound:
    """The open round a link names; LetterNotFound otherwise (a revoked or replaced link,
    a launched or closed round, anything else). Changes nothing."""
    round_id, nonce = _read_token(signer, token)
    founding = await session.get(FoundingRound, round_id)
    if founding is None or not secrets.compare_digest(founding.link_nonce, nonce):
        raise LetterNotFound
    letter = await session.get(Letter, founding.letter_id)
    if letter is None or letter.status != LetterStatus.draft or not is_open(founding):
        raise LetterNotFound
    domains = (
        await session.exec(select(AllowedDomain).where(AllowedDomain.letter_id == letter.id))
    ).all()
    return OpenRound(founding, letter, list(domains))


async def round_of(session: AsyncSession, letter_id: int) -> FoundingRound | None:
    """The letter's round, open or not."""
    return (
        await session.exec(select(FoundingRound).where(FoundingRound.letter_id == letter_id))
    ).first()


async def _lock_open_round(session: AsyncSession, letter_id: int) -> FoundingRound | None:
    """The letter's round, locked until commit, if it is open."""
    founding = (
        await session.exec(
            select(FoundingRound)
            .where(FoundingRound.letter_id == letter_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).first()
    return founding if is_open(founding) else None


class Launched(Exception):
    """The round launched after the link was read: the letter is public now."""


async def _launched(session: AsyncSession, letter_id: int) -> bool:
    found = await round_of(session, letter_id)
    return found is not None and found.launched_at is not None


@dataclass(frozen=True)
class Founded:
    """A founding confirmation: `signature` is stored, counted nowhere until launch."""

    letter: Letter
    outcome: str  # "verified" (new) or "updated" (signed in this round before)
    signature: Signature
    receipt: str | None
    launch_at: datetime | None
    time_zone: str


async def confirm(
    session: AsyncSession, keys: Keyring, pending: dict[str, Any], now: datetime, receipt: str
) -> Founded:
    """Use a signer's link of a founding round, in a transaction of its own. Commits.

    `pending` is the link's row as read (not yet used). Raises LinkUsed, Launched (the
    link is unused: confirm it as a public letter's) or the link's invalid error when the
    round was closed (nothing written).
    """
    claimed = await session.exec(
        update(PendingSignature)
        .where(
            col(PendingSignature.id) == pending["id"],
            col(PendingSignature.used_at).is_(None),
            col(PendingSignature.expires_at) > now,
        )
        .values(used_at=now)
    )
    if claimed.rowcount != 1:
        await session.rollback()
        raise LinkUsed
    letter_id = pending["letter_id"]
    founding = await _lock_open_round(session, letter_id)
    if founding is None:
        await session.rollback()
        launched = await _launched(session, letter_id)
        await session.rollback()  # the caller starts afresh
        if launched:
            raise Launched
        raise links.invalid(links.SIGNER)
    named = bool(pending["show_name"])
    # Sealed while hidden, in clear once shown (letters.record.names).
    name, title = names.of_pending(keys, pending)
    details = {
        **names.signature_columns(keys, letter_id, pending["email_hash"], named, name, title),
        "show_name": named,
        "reveal_at": None if named else pending["reveal_at"],
        "updated_at": now,
    }
    table = table_of(Signature)
    inserted = (
        await session.exec(
            dialect_insert(session)(table)
            .values(
                letter_id=letter_id,
                email_hash=pending["email_hash"],
                domain=pending["domain"],
                organization=pending["organization"],
                commitment=ledger.commitment(receipt),
                verified_at=now,
                letter_version=1,
                name_hidden_by_authors=False,
                founding=True,
                **details,
            )
            .on_conflict_do_nothing(index_elements=[table.c.letter_id, table.c.email_hash])
            .returning(table.c.id)
        )
    ).scalar_one_or_none()
    outcome = "verified"
    shown: str | None = receipt
    if inserted is None:
        # Signed in this round before: take the new details; still one signature.
        outcome, shown = "updated", None
        await session.exec(
            update(Signature)
            .where(
                col(Signature.letter_id) == letter_id,
                col(Signature.email_hash) == pending["email_hash"],
            )
            .values(**details)
        )
    signature = (
        await session.exec(
            select(Signature).where(
                Signature.letter_id == letter_id, Signature.email_hash == pending["email_hash"]
            )
        )
    ).one()
    letter = await session.get(Letter, letter_id)
    assert letter is not None
    await session.commit()
    return Founded(letter, outcome, signature, shown, founding.launch_at, founding.time_zone)


async def founding_count(session: AsyncSession, letter_id: int) -> int:
    """How many have signed in the round so far (for its authors only)."""
    statement = select(func.count()).select_from(Signature)
    return (
        await session.exec(
            statement.where(col(Signature.letter_id) == letter_id, col(Signature.founding))
        )
    ).one()


async def organization_count(session: AsyncSession, letter_id: int, organization: str) -> int:
    """How many from `organization` have signed in the round so far."""
    statement = select(func.count()).select_from(Signature)
    return (
        await session.exec(
            statement.where(
                col(Signature.letter_id) == letter_id,
                col(Signature.organization) == organization,
                col(Signature.founding),
            )
        )
    ).one()


async def withdraw_founding(session: AsyncSession, signature: Signature) -> bool:
    """Withdraw a founding signature before launch, in the caller's transaction (which
    holds the signature's row lock). Nothing was counted, so nothing moves; its pending
    links go too. False if launch counted it meanwhile (withdraw it as a counted one)."""
    deleted = await session.exec(
        delete(Signature).where(col(Signature.id) == signature.id, col(Signature.founding))
    )
    if deleted.rowcount != 1:
        return False
    await session.exec(
        delete(PendingSignature).where(
            col(PendingSignature.letter_id) == signature.letter_id,
            col(PendingSignature.email_hash) == signature.email_hash,
        )
    )
    return True


class Unchanged(Exception):
    """The requested change is how the founding signature already is."""


async def manage(
    session: AsyncSession,
    keys: Keyring,
    signature: Signature,
    withdraw: bool,
    details: Details | None,
) -> Signature | None:
    """A manage link's change to a founding signature, in the caller's transaction (which
    holds its row lock): withdrawn (None), hidden (`details` None) or shown otherwise. No
    counter or ledger entry moves: nothing was counted."""
    if withdraw:
        await withdraw_founding(session, signature)
        return None
    details = details or Details(name="", title="", show_name=False, reveal_at=None)
    after = (details.show_name, details.name, details.title, details.reveal_at)
    name, title = names.of_signature(keys, signature)
    if (signature.show_name, name, title, signature.reveal_at) == after:
        raise Unchanged
    signature.show_name = details.show_name
    names.set_on_signature(keys, signature, details.name, details.title)
    signature.reveal_at = None if details.show_name else details.reveal_at
    signature.updated_at = utcnow()
    session.add(signature)
    await session.flush()
    return signature


async def reset(session: AsyncSession, letter_id: int) -> int:
    """Discard a round's founding signatures and pending links, in the caller's
    transaction (the round is closed, or its text is about to change). Returns how many."""
    deleted = await session.exec(
        delete(Signature).where(col(Signature.letter_id) == letter_id, col(Signature.founding))
    )
    await session.exec(delete(PendingSignature).where(col(PendingSignature.letter_id) == letter_id))
    return int(deleted.rowcount or 0)


async def publish_draft(
    session: AsyncSession, letter_id: int, now: datetime, author_id: int | None
) -> bool:
    """Make a draft public as version 1, in the caller's transaction. False, with nothing
    written, when it is no longer a draft (another author published it a moment ago).
    Publishing from the author workspace and a founding round's launch both come here."""
    published = await session.exec(
        update(Letter)
        .where(col(Letter.id) == letter_id, col(Letter.status) == LetterStatus.draft)
        .values(
            status=LetterStatus.published,
            published_at=now,
            closed_at=None,
            version=1,
            revised_at=None,
            revision_note="",
            updated_at=now,
        )
        .returning(col(Letter.title), col(Letter.body))
    )
    text = published.first()
    if text is None:
        return False
    session.add(
        LetterVersion(
            letter_id=letter_id,
            number=1,
            title=text[0],
            body=text[1],
            note="",
            author_id=author_id,
            created_at=now,
        )
    )
    return True


async def launch(
    session: AsyncSession,
    letter_id: int,
    settings: Settings,
    now: datetime | None = None,
    author_id: int | None = None,
) -> Letter | None:
    """Make the draft public with its founding signatures counted. Commits.

    None (and nothing written) when the round is not open or the letter is no draft.
    """
    now = now or utcnow()
    founding = await _lock_open_round(session, letter_id)
    if founding is None:
        await session.rollback()
        return None
    # The founding signatures first, then the letter's row: the order manage links take.
    founders = (
        await session.exec(
            update(Signature)
            .where(col(Signature.letter_id) == letter_id, col(Signature.founding))
            .values(founding=False, letter_version=1, updated_at=now)
            .returning(
                col(Signature.id),
                col(Signature.verified_at),
                col(Signature.organization),
                col(Signature.show_name),
                col(Signature.reveal_at),
                col(Signature.name),
                col(Signature.title),
                col(Signature.sealed_name),
                col(Signature.email_hash),
                col(Signature.commitment),
            )
        )
    ).all()
    if not await publish_draft(session, letter_id, now, author_id):
        await session.rollback()
        return None
    # In the order they were confirmed (ids break ties: they were inserted in that order).
    ordered = sorted(founders, key=lambda row: (row.verified_at, row.id))
    totals = Counter(row.organization for row in ordered)
    # Names waiting for a threshold the final counts reach are opened and shown together.
    shown: dict[int, tuple[str, str]] = {}
    for row in ordered:
        if row.show_name:
            shown[row.id] = (row.name, row.title)
        elif row.reveal_at is not None and row.reveal_at <= totals[row.organization]:
            bound_to = names.of_signature_row(letter_id, row.email_hash)
            name, title = names.unseal(settings.keys, row.sealed_name, bound_to)
            if name:
                shown[row.id] = (name, title)
                await session.exec(
                    update(Signature)
                    .where(col(Signature.id) == row.id)
                    .values(show_name=True, reveal_at=None, name=name, title=title, sealed_name="")
                )
    for row in ordered:
        named = row.id in shown
        name, title = shown.get(row.id, ("", ""))
        await counting.count(session, letter_id, row.organization, named, now)
        await ledger.append(
            session,
            letter_id,
            LedgerKind.signed,
            organization=row.organization,
            named=named,
            name=name,
            title=title,
            commitment=row.commitment,
            now=now,
        )
    founding.launched_at = now
    session.add(founding)
    await session.flush()
    await milestones.check(session, letter_id, settings, now)
    letter = await session.get(Letter, letter_id, populate_existing=True)
    await session.commit()
    return letter


async def due(session: AsyncSession, now: datetime) -> list[int]:
    """The letters whose open round has a launch time that has come."""
    rows = await session.exec(
        select(FoundingRound.letter_id).where(
            col(FoundingRound.closed_at).is_(None),
            col(FoundingRound.launched_at).is_(None),
            col(FoundingRound.launch_at).is_not(None),
            col(FoundingRound.launch_at) <= now,
        )
    )
    return list(rows.all())


async def launch_due(
    session: AsyncSession, settings: Settings, now: datetime | None = None
) -> list[str]:
    """Launch every round whose time has come, each in its own transaction; their slugs."""
    now = now or utcnow()
    letter_ids = await due(session, now)
    await session.commit()
    launched = []
    for letter_id in letter_ids:
        letter = await launch(session, letter_id, settings, now)
        if letter is not None:
            launched.append(letter.slug)
    return launched
