"""Sign and confirm: the transactions that matter most.

Counting rule: a letter's counters and its organization counts change only inside the
transaction that turns a pending signature into a verified one, guarded so that a pending
signature is used once (`UPDATE ... WHERE used_at IS NULL`) and a person is counted once
(`INSERT ... ON CONFLICT (letter_id, email_hash) DO NOTHING`). Either both the signature and
its count are written, or neither is, on SQLite and PostgreSQL alike.

Both hot paths are lean (measured in bench/storm.py against a reference written straight
on psycopg), with statements built once. On PostgreSQL, a sign request takes its pending
signature's id from the sequence, then writes the pending signature and its email
(already leased to this process, which sends it after the commit) and last counts its
rate limits, in one statement that commits by itself (`_SIGN_PG`: the per-IP and
per-domain rows everyone from one office or company shares are held only for the end of
that statement and its commit, and a pending signature never exists without its email).
A confirmation reads its link, then does everything else in one statement that commits
by itself (`_COUNT_IN_PG`), or, when others of the same letter arrive meanwhile, in a
batch with them (`_count_together`):
claim the link, insert the signature, lock the letter's row and move its counters and
ledger length and head (the entry's hash computed in SQL from the canonical JSON prepared
here around `prev` and `seq`, see `ledger.chain_prefix`), then the organization's and the
day's counts, and insert the ledger entry. The rows every confirmation of a letter shares
are held for that statement's execution and commit only. When the counts it produced
call for more in the same transaction (a milestone, a reveal threshold, the signer's
own threshold met) or the person had signed before, the statement undoes itself and the
confirmation runs as one ordinary transaction of separate statements, in the same lock
order (`_count_step_by_step`), which is also how SQLite (one writer at a time) always
runs it, with the rate limits last in the sign transaction.

Lock order, everywhere (confirm, manage links, moderation, reveal, milestones): the
signature's row, then the letter's row, then its organization count, then its daily
count; reveal locks the waiting signatures of others after those and skips the ones
another transaction holds (that transaction releases its own: see letters.record.reveal).
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Boolean, Integer, bindparam, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlmodel import select as orm_select
from sqlmodel.ext.asyncio.session import AsyncSession

from letters.db import on_its_own, table_of
from letters.domains import match_domain, refusal_message
from letters.forms import REVEAL_THRESHOLDS, FieldError, SignatureInput
from letters.mail import outbox
from letters.mail.compose import Compose
from letters.models import (
    AllowedDomain,
    BlockedSigner,
    DailyCount,
    FoundingRound,
    LedgerEntry,
    LedgerKind,
    Letter,
    LetterStatus,
    OrganizationCount,
    PendingSignature,
    Signature,
    utcnow,
)
from letters.ratelimit import (
    GUARD,
    LIMITS_AT_ONCE,
    UNCAPPED,
    Limit,
    RateLimited,
    at_once_params,
    hit,
    ip_key,
    ip_prefix,
    refused,
)
from letters.record import (
    batching,
    blocks,
    counting,
    founding,
    ledger,
    links,
    milestones,
    names,
    rekey,
    reveal,
)
from letters.record import floods as floods_module
from letters.record.floods import FloodWatch
from letters.record.public import allowed_domains, get_public_letter
from letters.settings import Settings
from letters.tokens import LinkUsed, Signer, hash_nonce, new_nonce


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
    # The queued email, when it is leased to this process to send after the commit.
    leased: outbox.Leased | None = None


@dataclass(frozen=True)
class SigningRules:
    """What a sign request needs of its letter: the letter and its allowed domains.

    The web layer keeps one per letter for CACHE_SECONDS (and forgets it when the authors
    change the letter in that process), so a sign request reads neither from the database.
    """

    letter: Letter
    domains: Sequence[AllowedDomain]
    # A draft's founding round (letters.record.founding): signed before it is public.
    founding: bool = False


async def signing_rules(session: AsyncSession, slug: str) -> SigningRules:
    """Raises LetterNotFound."""
    letter = await get_public_letter(session, slug)
    return SigningRules(letter, await allowed_domains(session, letter))


@dataclass(frozen=True)
class Confirmation:
    letter: Letter
    outcome: str  # "verified": newly counted; "updated": already counted, details updated
    signature: Signature
    # Shown once to a new signer, never stored: its hash names their ledger entry.
    receipt: str | None = None


_PENDING = table_of(PendingSignature)
_PENDING_COLUMNS = (
    "letter_id",
    "email_hash",
    "domain",
    "organization",
    "sealed_name",
    "show_name",
    "reveal_at",
    "nonce_hash",
    "created_at",
    "expires_at",
)
_INSERT_PENDING = (
    insert(_PENDING)
    .values({name: bindparam(name, type_=_PENDING.c[name].type) for name in _PENDING_COLUMNS})
    .returning(_PENDING.c.id)
)
# PostgreSQL: the rate limits, the pending signature and its email in one statement, undone
# as a whole (nothing counted, nothing written) when a limit is exceeded (see
# letters.ratelimit). The pending signature's id is taken from its sequence beforehand
# (`_RESERVE_PG`, which locks nothing), so that its link and email are written before the
# statement, and a pending signature never exists without its email.
_RESERVE_PG = text("SELECT nextval(pg_get_serial_sequence('pending_signature', 'id'))")
_OUTBOX_CASTS = {
    "id": "BIGINT",
    "created_at": "TIMESTAMPTZ",
    "next_attempt_at": "TIMESTAMPTZ",
    "locked_until": "TIMESTAMPTZ",
    "attempts": "INTEGER",
    "delivery_id": "INTEGER",
}
_SIGN_PG_SQL = """
WITH pending AS (
    INSERT INTO pending_signature (id, PENDING_COLUMNS)
    SELECT :pending_id, :letter_id, :email_hash, :domain, :organization, :sealed_name,
        :show_name, CAST(:reveal_at AS INTEGER), :nonce_hash, :created_at, :link_expires_at
    RETURNING id
)QUEUED, LIMITS_AT_ONCE
SELECT GUARD AS guard, OUTBOX_ID AS outbox_id
""".replace("PENDING_COLUMNS", ", ".join(_PENDING_COLUMNS))
_QUEUED = """, queued AS (
    INSERT INTO outbox_message (OUTBOX_COLUMNS)
    SELECT OUTBOX_VALUES FROM pending
    RETURNING id
)""".replace("OUTBOX_COLUMNS", ", ".join(outbox.ROW_COLUMNS)).replace(
    "OUTBOX_VALUES",
    ", ".join(
        f"CAST(:mail_{name} AS {_OUTBOX_CASTS[name]})" if name in _OUTBOX_CASTS else f":mail_{name}"
        for name in outbox.ROW_COLUMNS
    ),
)
# With its email, and without (a caller that passes no `compose`).
_SIGN_PG = text(
    _SIGN_PG_SQL.replace("QUEUED", _QUEUED)
    .replace("LIMITS_AT_ONCE", LIMITS_AT_ONCE.replace("AFTER", "queued"))
    .replace("GUARD", GUARD)
    .replace("OUTBOX_ID", "(SELECT id FROM queued)")
)
_SIGN_PG_NO_MAIL = text(
    _SIGN_PG_SQL.replace("QUEUED", "")
    .replace("LIMITS_AT_ONCE", LIMITS_AT_ONCE.replace("AFTER", "pending"))
    .replace("GUARD", GUARD)
    .replace("OUTBOX_ID", "NULL")
)


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
    rules: SigningRules | None = None,
    floods: FloodWatch | None = None,
) -> LinkToSend:
    """Record a pending signature and queue the email with its link.

    On PostgreSQL the rate limits, the pending signature and its email are one statement
    that commits by itself (after the pending signature's id is taken from its sequence);
    on SQLite all is one transaction, the rate limits last.
    `rules` is the letter and its domains as the caller has them (read here otherwise);
    `floods`, the process's watch over flooded domains (letters.record.floods).
    Raises LetterNotFound, LetterClosed, FieldError or RateLimited; in each case nothing
    is written. The outcome is the same whether or not the address already signed.
    """
    now = now or utcnow()
    if rules is None:
        rules = await signing_rules(session, slug)
        await session.commit()  # ends the reads; what follows starts afresh
    letter = rules.letter
    if letter.status != LetterStatus.published and not rules.founding:
        raise LetterClosed(letter.id)
    form = SignatureInput.parse(data, ask_title=letter.ask_title)
    rule = match_domain(form.address.domain, rules.domains)
    if rule is None:
        raise FieldError(
            "email", refusal_message(form.address.domain, rules.domains), "domain_not_allowed"
        )
    email_hash = signer.email_hash(form.address.canonical)
    domain_key = floods_module.domain_key(signer, form.address.domain)
    limits = [
        # Per person and letter, apart from manage links (letters.record.signer_control):
        # sign requests anyone can make for an address never lock its owner out of those.
        Limit(f"sign:{letter.id}:{email_hash[:40]}", settings.limit_per_address),
        Limit("ip:" + ip_key(signer, client_host), settings.limit_per_ip),
        # Counted, never refused: a domain's count only tells when it is flooded (floods).
        Limit(domain_key, UNCAPPED),
    ]
    if settings.keys.older:
        # After a key change: what this address's older hash names moves to this one first
        # (letters.record.rekey), so a returning signer is recognized.
        await rekey.address(session, settings.keys, form.address.canonical, email_hash)
        await session.commit()
    if floods is not None:
        ip_domain = signer.key_hash("ip-domain", f"{ip_prefix(client_host)} {form.address.domain}")
        limits += await floods.limits(
            session,
            letter_id=letter.id,
            domain_key=domain_key,
            organization=rule.organization,
            ip_domain_key=ip_domain,
            per_domain=settings.limit_per_domain,
            window=settings.limit_window,
            now=now,
        )
    nonce = new_nonce()
    nonce_hash = hash_nonce(nonce)
    pending = {
        "letter_id": letter.id,
        "email_hash": email_hash,
        "domain": form.address.domain,
        "organization": rule.organization,
        # Sealed: nothing a pending signature holds is public yet.
        "sealed_name": names.seal(
            settings.keys, form.name, form.title, names.of_pending_row(nonce_hash)
        ),
        "show_name": form.show_name,
        "reveal_at": form.reveal_at,
        "nonce_hash": nonce_hash,
        "created_at": now,
        "expires_at": now + timedelta(seconds=settings.link_max_age),
    }
    lease = settings.mail_in_app
    outbox_id = leased = None
    message = None
    at_once = session.bind is not None and session.bind.dialect.name == "postgresql"
    if at_once:
        # The pending signature's id first (a sequence, no lock), so that its link and email
        # are ready; then one statement that commits by itself: the limits (the per-IP and
        # per-domain rows everyone from one office or company shares are held for it only),
        # the pending signature and its email, all or nothing.
        connection = await session.connection(execution_options=on_its_own(session))
        pending_id = (await connection.execute(_RESERVE_PG)).scalar_one()
        token = links.make(signer, links.SIGNER, pending_id, nonce)
        # The rate-limit rows' `expires_at` (the window's end) is not the link's.
        params = pending | at_once_params(limits, settings.limit_window, now)
        params.update(pending_id=pending_id, link_expires_at=pending["expires_at"])
        statement = _SIGN_PG_NO_MAIL
        if compose is not None:
            message = compose(form.address.email, token)
            row = outbox.row_values(settings.keys, message, now, lease=lease)
            params |= {f"mail_{name}": value for name, value in row.items()}
            statement = _SIGN_PG
        try:
            outbox_id = (await connection.execute(statement, params)).one().outbox_id
        except DBAPIError as error:
            limited = refused(error, settings.limit_window, now)
            if limited is None:
                raise
            await session.rollback()
            raise limited from None
    else:
        # SQLite: one transaction, the rate limits last (a refusal rolls everything back).
        connection = await session.connection()
        pending_id = (await connection.execute(_INSERT_PENDING, pending)).scalar_one()
        token = links.make(signer, links.SIGNER, pending_id, nonce)
        if compose is not None:
            message = compose(form.address.email, token)
            outbox_id = await outbox.enqueue(session, settings.keys, message, now, lease=lease)
        try:
            await hit(session, limits, settings.limit_window, now)
        except RateLimited:
            await session.rollback()
            raise
    await session.commit()
    if message is not None and lease:
        assert outbox_id is not None
        leased = outbox.Leased(outbox_id, message)
    return LinkToSend(
        email=form.address.email,
        token=token,
        letter=letter,
        outbox_id=outbox_id,
        leased=leased,
    )


@dataclass(frozen=True)
class PendingView:
    """What the confirmation page shows before the signer presses the button."""

    letter: Letter
    pending: PendingSignature
    used: bool
    # The name and title the signer chose to show, opened for this page ("" if hidden).
    name: str = ""
    title: str = ""
    founding: FoundingRound | None = None  # the open round, for a draft's founding link


async def inspect_link(
    session: AsyncSession, token: str, signer: Signer, settings: Settings
) -> PendingView:
    """Read a magic link without using it (safe for GET and for mail scanners)."""
    pending = await links.find(
        session, signer, links.SIGNER, token, settings.link_max_age, utcnow()
    )
    letter = await session.get(Letter, pending.letter_id)
    round_ = None
    if letter is not None and letter.status == LetterStatus.draft:
        round_ = await founding.round_of(session, pending.letter_id)
    if letter is None or (letter.status == LetterStatus.draft and not founding.is_open(round_)):
        raise links.invalid(links.SIGNER)
    used = pending.used_at is not None
    name, title = "", ""
    if pending.show_name and not used:
        name, title = names.of_pending(settings.keys, pending)
    return PendingView(
        letter=letter, pending=pending, used=used, name=name, title=title, founding=round_
    )


_LETTER = table_of(Letter)
_LETTER_COLUMNS = [column.name for column in _LETTER.columns]
_SIGNATURE = table_of(Signature)
_BLOCKED = table_of(BlockedSigner)
_ORGANIZATIONS = table_of(OrganizationCount)
_DAILY = table_of(DailyCount)
_ENTRIES = table_of(LedgerEntry)

# Every count that is a milestone (letters.record.milestones.is_round), up to 500,000,000.
MILESTONES = [unit * m // 2 for unit in (10**e for e in range(2, 9)) for m in (2, 5, 10)]
# What the guard of _COUNT_IN_PG says when it stops the statement (see there).
FOLLOW_UP = "letters: this confirmation has follow-ups"

# PostgreSQL, the common case: claim the link, insert the signature, then (if it is new)
# move the letter's counters and ledger length and head, the organization's count, the
# day's count, and append the ledger entry: one statement, run on its own (autocommit),
# so the rows every confirmation of the letter shares are held for its execution and
# commit only, never across a round trip to this process. Each part reads the one before
# it, which fixes the order in which rows are locked (see the module docstring). The
# letter's row is locked once, by its UPDATE, whose SET sees the latest committed version
# (a concurrent confirmation is waited for, then its row re-read): the new head is hashed
# from the old, and the old one kept in `ledger_prev`, which the new entry chains on.
# A blocked person's link is not claimed at all.
#
# The guard: when the new counts call for more work in the same transaction (a milestone,
# a reveal threshold of the organization, the signer's own threshold met) or the person
# had signed before (their new details), the final SELECT fails on purpose (a cast of
# FOLLOW_UP to integer), which undoes the whole statement; `confirm` then does all of it
# in one ordinary transaction instead (`_count_step_by_step`). So the fast path commits
# only confirmations with nothing else to do, decided on the counts the statement itself
# produced, under its locks.
_COUNT_IN_PG_SQL = """
WITH claimed AS (
    UPDATE pending_signature SET used_at = :now
    WHERE id = :pending_id AND used_at IS NULL AND expires_at > :now
      AND NOT EXISTS (SELECT 1 FROM blocked_signer
                      WHERE letter_id = :letter_id AND email_hash = :email_hash)
    RETURNING id
), inserted AS (
    INSERT INTO signature (letter_id, email_hash, domain, organization, name, title,
        sealed_name, show_name, reveal_at, commitment, verified_at, updated_at,
        letter_version, name_hidden_by_authors)
    SELECT :letter_id, :email_hash, :domain, :organization, :name, :title, :sealed_name,
        :show_name, CAST(:reveal_at AS INTEGER), :commitment, :now, :now,
        (SELECT version FROM letter WHERE id = :letter_id), false
    FROM claimed
    ON CONFLICT (letter_id, email_hash) DO NOTHING
    RETURNING id
), counted AS (
    UPDATE letter SET
        verified_count = verified_count + 1,
        named_count = named_count + :named,
        hidden_count = hidden_count + :hidden,
        updated_at = :now,
        ledger_length = ledger_length + 1,
        ledger_prev = ledger_head,
        ledger_head = encode(sha256(
            CAST(:prefix AS bytea) || convert_to(ledger_head, 'UTF8')
            || CAST(:seq_key AS bytea) || convert_to(CAST(ledger_length + 1 AS text), 'UTF8')
            || CAST(:suffix AS bytea)), 'hex')
    WHERE id = :letter_id AND EXISTS (SELECT 1 FROM inserted)
    RETURNING UPDATED_LETTER
), organization AS (
    INSERT INTO organization_count (letter_id, organization, count)
    SELECT :letter_id, :organization, 1 FROM counted
    ON CONFLICT (letter_id, organization) DO UPDATE SET count = organization_count.count + 1
    RETURNING count
), daily AS (
    INSERT INTO daily_count (letter_id, day, organization, count)
    SELECT :letter_id, :day, :organization, 1 FROM organization
    ON CONFLICT (letter_id, day, organization) DO UPDATE SET count = daily_count.count + 1
    RETURNING count
), entry AS (
    INSERT INTO ledger_entry (letter_id, seq, kind, day, organization, named, name, title,
        name_salt, name_digest, commitment, prev_hash, entry_hash)
    SELECT :letter_id, counted.ledger_length, 'signed', :day, :organization, :show_name,
        :entry_name, :entry_title, :salt, :entry_digest, :commitment, counted.ledger_prev,
        counted.ledger_head
    FROM counted, daily
    RETURNING seq
)
SELECT
    (SELECT count(*) FROM claimed) AS claimed,
    EXISTS (SELECT 1 FROM blocked_signer
            WHERE letter_id = :letter_id AND email_hash = :email_hash) AS blocked,
    (SELECT id FROM inserted) AS signature_id,
    (SELECT count FROM organization) AS organization_count,
    (SELECT seq FROM entry) AS seq,
    CAST(CASE WHEN
        (EXISTS (SELECT 1 FROM claimed) AND NOT EXISTS (SELECT 1 FROM inserted))
        OR (SELECT count FROM organization) = ANY(CAST(:thresholds AS integer[]))
        OR CAST(:reveal_at AS integer) <= (SELECT count FROM organization)
        OR counted.verified_count = ANY(CAST(:milestones AS integer[]))
        OR counted.verified_count = counted.goal
    THEN :follow_up ELSE '0' END AS integer) AS guard,
    COUNTED_LETTER
FROM (SELECT 1) AS one LEFT JOIN counted ON true
"""
_COUNT_IN_PG = text(
    _COUNT_IN_PG_SQL.replace(
        "UPDATED_LETTER", ", ".join(f"letter.{name}" for name in _LETTER_COLUMNS)
    ).replace("COUNTED_LETTER", ", ".join(f"counted.{name}" for name in _LETTER_COLUMNS))
).columns(
    claimed=Integer(),
    blocked=Boolean(),
    signature_id=Integer(),
    organization_count=Integer(),
    seq=Integer(),
    guard=Integer(),
    **{column.name: column.type for column in _LETTER.columns},
)

_PENDING_OF_LINK = (
    select(*_PENDING.columns, _LETTER.c.status)
    .join_from(_PENDING, _LETTER, _PENDING.c.letter_id == _LETTER.c.id)
    .where(_PENDING.c.id == bindparam("pending_id"))
)


@dataclass(frozen=True)
class _Link:
    """A signer's link, read with its letter's status before it is used."""

    pending: dict[str, Any]
    status: str


async def _read_link(
    connection: AsyncConnection, token: str, signer: Signer, settings: Settings, now: datetime
) -> _Link:
    pending_id, nonce = links.read(signer, links.SIGNER, token, settings.link_max_age)
    row = (await connection.execute(_PENDING_OF_LINK, {"pending_id": pending_id})).first()
    if row is None or row.nonce_hash != hash_nonce(nonce):
        raise links.invalid(links.SIGNER)
    pending = {name: row._mapping[name] for name in _PENDING.c.keys()}  # noqa: SIM118
    if pending["used_at"] is not None:
        raise LinkUsed
    if pending["expires_at"] <= now:
        raise links.expired(links.SIGNER)
    return _Link(pending, row.status)


@dataclass(frozen=True)
class _Counted:
    claimed: bool
    blocked: bool = False
    signature_id: int | None = None
    organization_count: int = 0
    letter: Letter | None = None  # the letter as counted, if the signature is new


async def confirm(
    session: AsyncSession,
    token: str,
    signer: Signer,
    settings: Settings,
    now: datetime | None = None,
    *,
    founding_round: bool = False,
) -> Confirmation | founding.Founded:
    """Use a magic link: verify (and count) the signature, once. Commits.

    A link of a draft's founding round is confirmed by letters.record.founding (counted
    nowhere until launch) when `founding_round` allows it, and is invalid otherwise.
    Raises TokenError (invalid, expired or already used) or LetterClosed.
    """
    now = now or utcnow()
    fast = session.bind is not None and session.bind.dialect.name == "postgresql"
    connection = await session.connection(execution_options=on_its_own(session))
    link = await _read_link(connection, token, signer, settings, now)
    pending = link.pending
    if link.status == LetterStatus.draft:
        await session.commit()  # ends the read; the round's own transaction follows
        if not founding_round:
            raise links.invalid(links.SIGNER)
        try:
            return await founding.confirm(
                session, settings.keys, pending, now, ledger.new_receipt()
            )
        except founding.Launched:
            # Launched meanwhile: the letter is public, and the link counts as its own.
            return await confirm(session, token, signer, settings, now)
    if link.status != LetterStatus.published:
        await session.rollback()
        raise LetterClosed(pending["letter_id"])
    receipt = ledger.new_receipt()
    commitment = ledger.commitment(receipt)
    named = bool(pending["show_name"])
    # Opened here, in memory: kept in clear only if shown (letters.record.names).
    name, title = names.of_pending(settings.keys, pending)
    salt, digest = ledger.new_name(named, name, title)
    day = now.date().isoformat()
    values = {
        "now": now,
        "pending_id": pending["id"],
        "letter_id": pending["letter_id"],
        "email_hash": pending["email_hash"],
        "domain": pending["domain"],
        "organization": pending["organization"],
        **names.signature_columns(
            settings.keys, pending["letter_id"], pending["email_hash"], named, name, title
        ),
        "show_name": named,
        "reveal_at": None if named else pending["reveal_at"],
        "commitment": commitment,
        "named": int(named),
        "hidden": int(not named),
        "day": day,
        "entry_name": name if named else "",
        "entry_title": title if named else "",
        "salt": salt,
        "entry_digest": digest,
        "prefix": ledger.chain_prefix(
            LedgerKind.signed, day, pending["organization"], named, digest, commitment
        ),
    }
    async with contextlib.AsyncExitStack() as stack:
        counted = None
        if fast:
            # The link was read on its own: give the connection back, then count with the
            # confirmations of this letter that arrive meanwhile (`_count_together`).
            await session.commit()
            assert isinstance(session.bind, AsyncEngine)
            # A confirmation with follow-ups is counted below, in this request's transaction;
            # the batch after it waits until this block ends, so as to count after it.
            turn = _TOGETHER.turn((session.bind, pending["letter_id"]), values)
            counted = await stack.enter_async_context(turn)
        if counted is None:
            # SQLite, or a confirmation with follow-ups: one ordinary transaction.
            connection = await session.connection()
            counted = await _count_step_by_step(connection, values)
        if not counted.claimed:
            await session.rollback()
            if counted.blocked:
                raise blocks.SignatureRemoved
            raise LinkUsed
        letter_id, email_hash = pending["letter_id"], pending["email_hash"]
        organization = pending["organization"]
        if counted.letter is None:
            # Counted already: this person signed before. Take their new details.
            await _update_existing(session, _pending_row(pending), name, title, settings, now)
            await reveal.release(session, settings.keys, letter_id, organization, now, email_hash)
            await session.commit()
            return await _confirmation(session, letter_id, email_hash, "updated", None)
        letter = counted.letter
        shown = 0
        if session.in_transaction():
            # Round counts and the goal email the authors, once each (letters.record.milestones).
            await milestones.check(session, letter_id, settings, now, letter)
            # Names waiting for this organization's count to reach their threshold: shown
            # together with the count that reached it.
            if reveal.may_release(counted.organization_count, values["reveal_at"], name):
                reached = counted.organization_count
                shown = await reveal.release(
                    session, settings.keys, letter_id, organization, now, email_hash, reached
                )
            await session.commit()
        if shown:
            # Names were shown after the counters were read: read them again (rarely).
            return await _confirmation(session, letter_id, email_hash, "verified", receipt)
        assert counted.signature_id is not None
        signature = Signature(
            id=counted.signature_id,
            letter_id=letter_id,
            email_hash=email_hash,
            domain=pending["domain"],
            organization=organization,
            # In memory only, for the page that thanks the signer.
            name=name,
            title=title,
            show_name=named,
            reveal_at=values["reveal_at"],
            commitment=commitment,
            verified_at=now,
            updated_at=now,
            letter_version=letter.version,
        )
        return Confirmation(letter=letter, outcome="verified", signature=signature, receipt=receipt)


def _pending_row(pending: dict[str, Any]) -> PendingSignature:
    return PendingSignature(**pending)


async def _confirmation(
    session: AsyncSession, letter_id: int, email_hash: str, outcome: str, receipt: str | None
) -> Confirmation:
    signature = (
        await session.exec(
            orm_select(Signature).where(
                Signature.letter_id == letter_id, Signature.email_hash == email_hash
            )
        )
    ).one()
    letter = await session.get(Letter, letter_id, populate_existing=True)
    assert letter is not None
    return Confirmation(letter=letter, outcome=outcome, signature=signature, receipt=receipt)


async def _count_in_pg(connection: AsyncConnection, values: dict[str, Any]) -> _Counted | None:
    """The one-statement count (autocommit); None when it stopped for follow-ups."""
    params = dict(values)
    params.update(
        prefix=values["prefix"].encode(),
        seq_key=ledger.SEQ.encode(),
        suffix=b"}",
        thresholds=list(REVEAL_THRESHOLDS),
        milestones=MILESTONES,
        follow_up=FOLLOW_UP,
    )
    try:
        row = (await connection.execute(_COUNT_IN_PG, params)).one()
    except DBAPIError as error:
        if FOLLOW_UP in str(error.orig):
            return None
        raise
    return _Counted(
        claimed=bool(row.claimed),
        blocked=bool(row.blocked),
        signature_id=row.signature_id,
        organization_count=row.organization_count or 0,
        letter=_letter_of(row._mapping) if row.signature_id is not None else None,
    )


# PostgreSQL under load: the confirmations of one letter that arrive while another batch
# of them runs in this process are counted together, in one transaction of two
# statements (letters.record.batching explains why). The first claims every link,
# inserts the new signatures and locks the letter's row, reading its ledger's end;
# the entries are chained here, in order; the second moves the letter's counters and
# ledger end, each organization's and day's count by as many as it got, and appends the
# entries. Rows are locked in the order of the module docstring. When a count it
# produced calls for follow-ups (as `_COUNT_IN_PG`'s guard decides) or a person had
# signed before, the batch is undone and counted again in three parts: those before
# that confirmation, that one alone, and the rest.
_CLAIM_TOGETHER = text(
    """
WITH items AS (
    SELECT * FROM jsonb_to_recordset(CAST(:items AS jsonb)) AS item(
        k integer, pending_id integer, email_hash text, domain text, organization text,
        name text, title text, sealed_name text, show_name boolean, reveal_at integer,
        commitment text, now timestamptz)
), locked AS (
    -- In id order, as every batch locks them: two batches racing over the same links
    -- (a link opened twice) wait for one another, never for each other.
    SELECT id FROM pending_signature
    WHERE id IN (SELECT pending_id FROM items)
    ORDER BY id
    FOR NO KEY UPDATE
), claimed AS (
    UPDATE pending_signature AS pending SET used_at = items.now
    FROM items
    WHERE pending.id = items.pending_id AND pending.id IN (SELECT id FROM locked)
      AND pending.used_at IS NULL AND pending.expires_at > items.now
      AND NOT EXISTS (SELECT 1 FROM blocked_signer
                      WHERE letter_id = :letter_id AND email_hash = items.email_hash)
    RETURNING pending.id
), inserted AS (
    INSERT INTO signature (letter_id, email_hash, domain, organization, name, title,
        sealed_name, show_name, reveal_at, commitment, verified_at, updated_at,
        letter_version, name_hidden_by_authors)
    SELECT :letter_id, items.email_hash, items.domain, items.organization, items.name,
        items.title, items.sealed_name, items.show_name, items.reveal_at, items.commitment,
        items.now, items.now, (SELECT version FROM letter WHERE id = :letter_id), false
    FROM items JOIN claimed ON claimed.id = items.pending_id
    ORDER BY items.email_hash  -- the same order in every batch, for the same reason
    ON CONFLICT (letter_id, email_hash) DO NOTHING
    RETURNING id, email_hash
), ledger_end AS (
    -- Locked as an UPDATE locks it: a plain FOR UPDATE would also stop every sign request
    -- (its pending signature's foreign key takes a key-share lock on this row).
    SELECT ledger_head, ledger_length FROM letter
    WHERE id = :letter_id AND EXISTS (SELECT 1 FROM inserted)
    FOR NO KEY UPDATE
)
SELECT items.k, claimed.id IS NOT NULL AS claimed,
    EXISTS (SELECT 1 FROM blocked_signer
            WHERE letter_id = :letter_id AND email_hash = items.email_hash) AS blocked,
    inserted.id AS signature_id,
    (SELECT ledger_head FROM ledger_end) AS ledger_head,
    (SELECT ledger_length FROM ledger_end) AS ledger_length
FROM items
LEFT JOIN claimed ON claimed.id = items.pending_id
LEFT JOIN inserted ON inserted.email_hash = items.email_hash
ORDER BY items.k
"""
)
_COUNT_TOGETHER = text(
    """
WITH entries AS (
    SELECT * FROM jsonb_to_recordset(CAST(:entries AS jsonb)) AS entry(
        seq integer, day text, organization text, named boolean, name text, title text,
        salt text, digest text, commitment text, prev text, hash text)
), counted AS (
    UPDATE letter SET
        verified_count = verified_count + :added,
        named_count = named_count + :named,
        hidden_count = hidden_count + :hidden,
        updated_at = :now,
        ledger_length = :ledger_length,
        ledger_prev = :ledger_prev,
        ledger_head = :ledger_head
    WHERE id = :letter_id
    RETURNING UPDATED_LETTER
), organizations AS (
    INSERT INTO organization_count (letter_id, organization, count)
    SELECT :letter_id, organization, count(*) FROM entries
    WHERE EXISTS (SELECT 1 FROM counted)
    GROUP BY organization
    ON CONFLICT (letter_id, organization)
    DO UPDATE SET count = organization_count.count + excluded.count
    RETURNING organization, count
), daily AS (
    INSERT INTO daily_count (letter_id, day, organization, count)
    SELECT :letter_id, day, organization, count(*) FROM entries
    WHERE EXISTS (SELECT 1 FROM organizations)
    GROUP BY day, organization
    ON CONFLICT (letter_id, day, organization)
    DO UPDATE SET count = daily_count.count + excluded.count
    RETURNING 1
), appended AS (
    INSERT INTO ledger_entry (letter_id, seq, kind, day, organization, named, name, title,
        name_salt, name_digest, commitment, prev_hash, entry_hash)
    SELECT :letter_id, seq, 'signed', day, organization, named, name, title, salt, digest,
        commitment, prev, hash
    FROM entries WHERE EXISTS (SELECT 1 FROM daily)
    RETURNING 1
)
SELECT (SELECT count(*) FROM appended) AS appended,
    (SELECT jsonb_object_agg(organization, count) FROM organizations) AS organization_counts,
    counted.*
FROM counted
""".replace("UPDATED_LETTER", ", ".join(f"letter.{name}" for name in _LETTER_COLUMNS))
).columns(
    appended=Integer(),
    organization_counts=postgresql.JSONB(),
    **{column.name: column.type for column in _LETTER.columns},
)


# A new signature's columns that a confirmation gives as they are (`_steps`, and what
# `_CLAIM_TOGETHER` reads of each confirmation besides its link, place and time).
_SIGNATURE_VALUES = (
    "email_hash",
    "domain",
    "organization",
    "name",
    "title",
    "sealed_name",
    "show_name",
    "commitment",
)
_CLAIMED_COLUMNS = ("pending_id", *_SIGNATURE_VALUES, "reveal_at")


_Ticket = batching.Ticket[dict[str, Any], "_Counted | None"]


class _AloneInstead(Exception):
    """A batch that must not be committed as it is: the confirmation at `index` has
    follow-ups (or its person had signed before) and is counted on its own."""

    def __init__(self, index: int) -> None:
        super().__init__(index)
        self.index = index


async def _count_together(key: Any, tickets: list[_Ticket]) -> None:
    """Count a batch of confirmations of one letter (`key`: engine, letter id) and answer
    each as `_count_in_pg` would, in order."""
    engine, letter_id = key
    if len(tickets) == 1:
        async with engine.connect() as connection:
            alone = await connection.execution_options(isolation_level="AUTOCOMMIT")
            counted = await _count_in_pg(alone, tickets[0].item)
        tickets[0].answer(counted)
        if counted is None:
            # Counted by its own request, with its follow-ups: what comes next counts after.
            await tickets[0].finished()
        return
    try:
        async with engine.begin() as connection:
            together = await _count_batch(connection, letter_id, [t.item for t in tickets])
    except _AloneInstead as stop:
        # Undone. Those before it are counted together again (their counts are the same),
        # then it alone (with its follow-ups), then the rest.
        index = stop.index
        if index:
            await _count_together(key, tickets[:index])
        await _count_together(key, [tickets[index]])
        if index + 1 < len(tickets):
            await _count_together(key, tickets[index + 1 :])
        return
    COUNTED_TOGETHER[len(tickets)] += 1
    for ticket, counted in zip(tickets, together, strict=True):
        ticket.answer(counted)


async def _count_batch(
    connection: AsyncConnection, letter_id: int, items: list[dict[str, Any]]
) -> list[_Counted | None]:
    """The two statements, and the decision to keep them (raises _AloneInstead)."""
    rows = (
        await connection.execute(
            _CLAIM_TOGETHER,
            {
                "letter_id": letter_id,
                "items": json.dumps(
                    [
                        {"k": k, "now": item["now"].isoformat()}
                        | {name: item[name] for name in _CLAIMED_COLUMNS}
                        for k, item in enumerate(items)
                    ]
                ),
            },
        )
    ).all()
    for row in rows:
        if row.claimed and row.signature_id is None:
            raise _AloneInstead(row.k)  # a person who signed before: their new details follow
    new = [(item, row) for item, row in zip(items, rows, strict=True) if row.signature_id]
    if not new:
        return [_Counted(claimed=bool(row.claimed), blocked=bool(row.blocked)) for row in rows]
    length, head = new[0][1].ledger_length, new[0][1].ledger_head
    entries = []
    for item, _ in new:
        length += 1
        entry_hash = ledger.chained_hash(item["prefix"], head, length)
        entries.append(
            {
                "seq": length,
                "day": item["day"],
                "organization": item["organization"],
                "named": item["show_name"],
                "name": item["entry_name"],
                "title": item["entry_title"],
                "salt": item["salt"],
                "digest": item["entry_digest"],
                "commitment": item["commitment"],
                "prev": head,
                "hash": entry_hash,
            }
        )
        head = entry_hash
    counted = (
        await connection.execute(
            _COUNT_TOGETHER,
            {
                "letter_id": letter_id,
                "entries": json.dumps(entries),
                "added": len(new),
                "named": sum(item["named"] for item, _ in new),
                "hidden": sum(item["hidden"] for item, _ in new),
                "now": max(item["now"] for item, _ in new),
                "ledger_length": length,
                "ledger_prev": entries[-1]["prev"],
                "ledger_head": head,
            },
        )
    ).one()
    assert counted.appended == len(new)
    letter = _letter_of(counted._mapping)
    # Each confirmation's own counts, as if counted one after the other in this order.
    verified = letter.verified_count - len(new)
    reached = dict(counted.organization_counts)
    for item, _ in new:
        reached[item["organization"]] -= 1
    positions = {}
    for item, row in new:
        verified += 1
        reached[item["organization"]] += 1
        at = reached[item["organization"]]
        positions[row.k] = at
        reveal_at = item["reveal_at"]
        if (
            at in REVEAL_THRESHOLDS
            or (reveal_at is not None and reveal_at <= at)
            or milestones.is_round(verified)
            or verified == letter.goal
        ):
            raise _AloneInstead(row.k)
    return [
        _Counted(
            claimed=bool(row.claimed),
            blocked=bool(row.blocked),
            signature_id=row.signature_id,
            organization_count=positions.get(row.k, 0),
            letter=letter if row.signature_id else None,
        )
        for row in rows
    ]


# How many batches of each size this process committed together (tests read it).
COUNTED_TOGETHER: Counter[int] = Counter()
_TOGETHER: batching.Batcher[dict[str, Any], _Counted | None] = batching.Batcher(
    _count_together, distinct=lambda item: item["email_hash"]
)


def _letter_of(mapping: Any) -> Letter:
    return Letter(**{name: mapping[name] for name in _LETTER_COLUMNS})


def _now(name: str = "now") -> Any:
    return bindparam(name, type_=_PENDING.c.created_at.type)


def _bound(*same: str, **renamed: str) -> dict[str, Any]:
    """VALUES for a Core statement: each column bound to the parameter of its own name
    (`same`), or of the name given (`renamed`: column=parameter)."""
    return {name: bindparam(name) for name in same} | {
        column: bindparam(parameter) for column, parameter in renamed.items()
    }


@dataclass(frozen=True)
class _Steps:
    """The statements of `_count_step_by_step` for one database (upserts differ)."""

    is_blocked: Any
    claim: Any
    insert_signature: Any
    lock_ledger_end: Any
    count_letter: Any
    count_organization: Any
    count_day: Any
    insert_entry: Any

    def names(self, statement: Any) -> frozenset[str]:
        """What `statement` binds: Core would add a parameter named like a column it does
        not set to its SET clause or VALUES, so each gets exactly its own."""
        return _BOUND[id(statement)]


_BOUND: dict[int, frozenset[str]] = {}


def _steps(dialect: str) -> _Steps:
    """Built once per database, then reused."""
    if dialect in _STEPS:
        return _STEPS[dialect]
    upsert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    steps = _Steps(
        is_blocked=select(_BLOCKED.c.id).where(
            _BLOCKED.c.letter_id == bindparam("letter_id"),
            _BLOCKED.c.email_hash == bindparam("email_hash"),
        ),
        claim=update(_PENDING)
        .where(
            _PENDING.c.id == bindparam("pending_id"),
            _PENDING.c.used_at.is_(None),
            _PENDING.c.expires_at > _now(),
        )
        .values(used_at=_now()),
        insert_signature=upsert(_SIGNATURE)
        .values(
            **_bound("letter_id", *_SIGNATURE_VALUES),
            reveal_at=bindparam("reveal_at", type_=Integer()),
            verified_at=_now(),
            updated_at=_now(),
            letter_version=select(_LETTER.c.version)
            .where(_LETTER.c.id == bindparam("letter_id"))
            .scalar_subquery(),
            name_hidden_by_authors=False,
        )
        .on_conflict_do_nothing(index_elements=[_SIGNATURE.c.letter_id, _SIGNATURE.c.email_hash])
        .returning(_SIGNATURE.c.id),
        # The letter's row, locked as an UPDATE locks it (FOR NO KEY UPDATE: the key-share
        # locks that inserting rows referring to the letter take do not conflict with it;
        # SQLite's write lock is held anyway).
        lock_ledger_end=select(_LETTER.c.ledger_length, _LETTER.c.ledger_head)
        .where(_LETTER.c.id == bindparam("letter_id"))
        .with_for_update(key_share=True),
        count_letter=update(_LETTER)
        .where(_LETTER.c.id == bindparam("letter_id"))
        .values(
            verified_count=_LETTER.c.verified_count + 1,
            named_count=_LETTER.c.named_count + bindparam("named"),
            hidden_count=_LETTER.c.hidden_count + bindparam("hidden"),
            updated_at=_now(),
            ledger_length=bindparam("seq"),
            ledger_prev=bindparam("prev"),
            ledger_head=bindparam("head"),
        )
        .returning(*_LETTER.columns),
        count_organization=upsert(_ORGANIZATIONS)
        .values(**_bound("letter_id", "organization"), count=1)
        .on_conflict_do_update(
            index_elements=[_ORGANIZATIONS.c.letter_id, _ORGANIZATIONS.c.organization],
            set_={"count": _ORGANIZATIONS.c.count + 1},
        )
        .returning(_ORGANIZATIONS.c.count),
        count_day=upsert(_DAILY)
        .values(**_bound("letter_id", "day", "organization"), count=1)
        .on_conflict_do_update(
            index_elements=[_DAILY.c.letter_id, _DAILY.c.day, _DAILY.c.organization],
            set_={"count": _DAILY.c.count + 1},
        ),
        insert_entry=insert(_ENTRIES).values(
            **_bound("letter_id", "seq", "day", "organization", "commitment"),
            kind=LedgerKind.signed.value,
            # The entry's columns from the confirmation's names for them.
            **_bound(
                named="show_name",
                name="entry_name",
                title="entry_title",
                name_salt="salt",
                name_digest="entry_digest",
                prev_hash="prev",
                entry_hash="head",
            ),
        ),
    )
    postgres: Dialect = postgresql.psycopg.dialect()  # type: ignore[no-untyped-call]
    compiler = postgres if dialect == "postgresql" else sqlite.dialect()
    for statement in vars(steps).values():
        _BOUND[id(statement)] = frozenset(statement.compile(dialect=compiler).params)
    _STEPS[dialect] = steps
    return steps


_STEPS: dict[str, _Steps] = {}


async def _count_step_by_step(connection: AsyncConnection, values: dict[str, Any]) -> _Counted:
    """The same steps as _COUNT_IN_PG, one statement each, in the caller's transaction, in
    the same lock order, with the entry's hash computed here; the caller commits (after
    any follow-ups). SQLite's transaction holds the database's write lock throughout."""
    steps = _steps(connection.dialect.name)

    async def run(statement: Any, params: dict[str, Any]) -> Any:
        names = steps.names(statement)
        bound = {name: value for name, value in params.items() if name in names}
        return await connection.execute(statement, bound)

    if (await run(steps.is_blocked, values)).first() is not None:
        return _Counted(claimed=False, blocked=True)
    if (await run(steps.claim, values)).rowcount != 1:
        return _Counted(claimed=False)
    signature_id = (await run(steps.insert_signature, values)).scalar_one_or_none()
    if signature_id is None:
        return _Counted(claimed=True)
    length, prev = (await run(steps.lock_ledger_end, values)).one()
    seq = length + 1
    params = values | {
        "seq": seq,
        "prev": prev,
        "head": ledger.chained_hash(values["prefix"], prev, seq),
    }
    row = (await run(steps.count_letter, params)).one()
    organization_count = (await run(steps.count_organization, params)).scalar_one()
    await run(steps.count_day, params)
    await run(steps.insert_entry, params)
    return _Counted(
        claimed=True,
        signature_id=signature_id,
        organization_count=organization_count,
        letter=_letter_of(row._mapping),
    )


async def _update_existing(
    session: AsyncSession,
    pending: PendingSignature,
    name: str,
    title: str,
    settings: Settings,
    now: datetime,
) -> None:
    """A person who already signed confirmed again: take their new details (`name` and
    `title` opened from the pending signature), count nothing new.

    The row is locked (`FOR UPDATE` on PostgreSQL; SQLite's transaction already holds the
    write lock) so two concurrent re-confirmations cannot both move a named/hidden count.
    """
    signature = (
        await session.exec(
            orm_select(Signature)
            .where(
                Signature.letter_id == pending.letter_id,
                Signature.email_hash == pending.email_hash,
            )
            .with_for_update()
        )
    ).one()
    # Confirming again confirms the text as it is now.
    signature.letter_version = (
        await session.exec(orm_select(Letter.version).where(Letter.id == pending.letter_id))
    ).one()
    await counting.show_as(
        session,
        signature,
        show_name=pending.show_name,
        name=name,
        title=title,
        reveal_at=pending.reveal_at,
        now=now,
        keys=settings.keys,
    )
