"""The public ledger: a hash-chained record, per letter, of every change to its count.

Each verified signature, change of visibility, withdrawal and invalidation appends one
entry in the same transaction as the counters it moves. An entry holds only what the
public pages already show (day, organization, named or hidden, the name where shown) and
the signature's *commitment*: the SHA-256 of a random receipt shown once to the signer,
so they can find their own entry later and nobody else can tell whose it is.

Names are chained through a salted digest, not directly. When a name stops being public
(the signer hides it, or the authors erase names after the letter closes), the name, title
and salt are blanked in every entry of that signature; the digest stays, so the chain
still verifies and the removed name cannot be recovered by guessing.

Anyone can recompute the counts from the entries: `verify()` below does, and so does
`letters verify-ledger`. The format is versioned; never change how v1 hashes.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from letters.models import GENESIS, LedgerEntry, LedgerKind, Letter

FORMAT = "letters-ledger-v1"
RECEIPT_PREFIX = "letters-receipt-v1:"
# How many signatures each kind adds to the count.
EFFECT = {
    LedgerKind.signed: 1,
    LedgerKind.changed: 0,
    LedgerKind.withdrawn: -1,
    LedgerKind.invalidated: -1,
}


def new_receipt() -> str:
    """A random receipt for the signer: 128 bits in hex, easy to copy (and, unlike base64,
    never starting with "-", which a command line would take for an option)."""
    return secrets.token_hex(16)


def commitment(receipt: str) -> str:
    return hashlib.sha256((RECEIPT_PREFIX + receipt.strip()).encode()).hexdigest()


def name_digest(salt: str, name: str, title: str) -> str:
    data = bytes.fromhex(salt) + json.dumps([name, title], ensure_ascii=False).encode()
    return hashlib.sha256(data).hexdigest()


def entry_hash(entry: Mapping[str, Any]) -> str:
    """The hash of an entry: SHA-256 of its chained fields as canonical JSON."""
    chained = {
        "format": FORMAT,
        "seq": entry["seq"],
        "kind": entry["kind"],
        "day": entry["day"],
        "organization": entry["organization"],
        "named": entry["named"],
        "name_digest": entry["name_digest"],
        "commitment": entry["commitment"],
        "prev": entry["prev"],
    }
    canonical = json.dumps(chained, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def append(
    session: AsyncSession,
    letter_id: int,
    kind: LedgerKind,
    *,
    organization: str,
    named: bool,
    name: str,
    title: str,
    commitment: str,
    now: datetime,
) -> LedgerEntry:
    """Append an entry, in the caller's transaction.

    The first statement updates the letter's row, which locks it until commit (PostgreSQL)
    or runs inside the database-wide write lock (SQLite, BEGIN IMMEDIATE): entries of one
    letter are numbered and chained one at a time, with no gaps and no forks.
    """
    seq, prev = (
        await session.exec(
            update(Letter)
            .where(col(Letter.id) == letter_id)
            .values(ledger_length=col(Letter.ledger_length) + 1)
            .returning(col(Letter.ledger_length), col(Letter.ledger_head))
        )
    ).one()
    salt = secrets.token_hex(16) if named else ""
    entry = LedgerEntry(
        letter_id=letter_id,
        seq=seq,
        kind=kind,
        day=now.date().isoformat(),
        organization=organization,
        named=named,
        name=name if named else "",
        title=title if named else "",
        name_salt=salt,
        name_digest=name_digest(salt, name, title) if named else "",
        commitment=commitment,
        prev_hash=prev,
        entry_hash="",
    )
    entry.entry_hash = entry_hash(public_entry(entry))
    session.add(entry)
    await session.exec(
        update(Letter).where(col(Letter.id) == letter_id).values(ledger_head=entry.entry_hash)
    )
    await session.flush()
    return entry


async def redact_names(session: AsyncSession, letter_id: int, commitment: str | None) -> int:
    """Blank the name, title and salt of a signature's entries (all entries if None).

    The chain is unaffected: it covers only the salted digest.
    """
    statement = update(LedgerEntry).where(
        col(LedgerEntry.letter_id) == letter_id, col(LedgerEntry.name_salt) != ""
    )
    if commitment is not None:
        statement = statement.where(col(LedgerEntry.commitment) == commitment)
    result = await session.exec(statement.values(name="", title="", name_salt=""))
    return int(result.rowcount or 0)


def public_entry(entry: LedgerEntry) -> dict[str, Any]:
    """An entry as published (one line of the ledger download)."""
    return {
        "seq": entry.seq,
        "kind": entry.kind,
        "day": entry.day,
        "organization": entry.organization,
        "named": entry.named,
        "name": entry.name or None,
        "title": entry.title or None,
        "name_salt": entry.name_salt or None,
        "name_digest": entry.name_digest,
        "commitment": entry.commitment,
        "prev": entry.prev_hash,
        "hash": entry.entry_hash,
    }


class LedgerError(Exception):
    """The ledger does not verify; the message says where and why."""


@dataclass
class Recount:
    """What a ledger proves: the counts, recomputed entry by entry."""

    length: int = 0
    head: str = GENESIS
    verified: int = 0
    named: int = 0
    hidden: int = 0
    organizations: Counter[str] = field(default_factory=Counter)
    redacted: int = 0  # named entries whose name was later removed
    # commitment -> (organization, named) of each signature still counted
    active: dict[str, tuple[str, bool]] = field(default_factory=dict)
    # commitment -> the seq numbers of its entries
    history: dict[str, list[int]] = field(default_factory=dict)
    at_checkpoint: Recount | None = None


def verify(entries: Iterable[Mapping[str, Any]], checkpoint: int | None = None) -> Recount:
    """Check the chain and recount. Raises LedgerError at the first entry that is wrong.

    With `checkpoint`, the recount as it stood after that entry is kept in
    `result.at_checkpoint` (to compare with a snapshot taken then).
    """
    result = Recount()
    if checkpoint == 0:
        result.at_checkpoint = _counted(result)
    for entry in entries:
        _check_entry(entry, result)
        seq, kind, commit = entry["seq"], entry["kind"], entry["commitment"]
        organization, named = entry["organization"], entry["named"]
        counted = commit in result.active
        if kind == LedgerKind.signed and counted:
            raise LedgerError(f"entry {seq}: signature {commit[:12]}… is counted twice")
        if kind != LedgerKind.signed and not counted:
            raise LedgerError(f"entry {seq}: {kind} a signature that is not counted")
        if counted and result.active[commit][0] != organization:
            raise LedgerError(f"entry {seq}: the signature changed organization")
        if EFFECT[LedgerKind(kind)] < 0:
            del result.active[commit]
        else:
            result.active[commit] = (organization, named)
        result.history.setdefault(commit, []).append(seq)
        result.length, result.head = seq, entry["hash"]
        if seq == checkpoint:
            result.at_checkpoint = _counted(result)
    return _counted(result, into=result)


def _counted(state: Recount, into: Recount | None = None) -> Recount:
    """The counts of `state`'s active signatures (in `into`, or in a new summary)."""
    summary = into or Recount(length=state.length, head=state.head, redacted=state.redacted)
    summary.organizations = Counter(organization for organization, _ in state.active.values())
    summary.named = sum(named for _, named in state.active.values())
    summary.verified = len(state.active)
    summary.hidden = summary.verified - summary.named
    return summary


FIELDS = {
    "seq": int,
    "kind": str,
    "day": str,
    "organization": str,
    "named": bool,
    "name_digest": str,
    "commitment": str,
    "prev": str,
    "hash": str,
}


def _check_entry(entry: Mapping[str, Any], result: Recount) -> None:
    if not isinstance(entry, Mapping):
        raise LedgerError(f"after entry {result.length}: not a JSON object")
    for name, kind in FIELDS.items():
        if type(entry.get(name)) is not kind:
            raise LedgerError(f"after entry {result.length}: field {name!r} is missing or wrong")
    seq = entry["seq"]
    if seq != result.length + 1:
        raise LedgerError(f"entry {seq}: expected entry {result.length + 1} (missing or reordered)")
    if entry["kind"] not in EFFECT:
        raise LedgerError(f"entry {seq}: unknown kind {entry['kind']!r}")
    if entry["prev"] != result.head:
        raise LedgerError(f"entry {seq}: does not follow entry {result.length} (chain broken)")
    if entry_hash(entry) != entry["hash"]:
        raise LedgerError(f"entry {seq}: its hash does not match its contents (altered)")
    if entry["named"] != bool(entry["name_digest"]):
        raise LedgerError(f"entry {seq}: a name digest must be present exactly when named")
    salt = entry.get("name_salt")
    if salt:
        try:
            expected = name_digest(salt, entry.get("name") or "", entry.get("title") or "")
        except (TypeError, ValueError):
            expected = ""
        if expected != entry["name_digest"]:
            raise LedgerError(f"entry {seq}: the name shown is not the name chained (altered)")
    elif entry["named"]:
        if entry.get("name"):
            raise LedgerError(f"entry {seq}: a name is shown without its salt")
        result.redacted += 1


async def read_entries(
    session: AsyncSession, letter_id: int, after: int, until: int, limit: int
) -> Sequence[LedgerEntry]:
    """Entries after..until (inclusive), oldest first, at most `limit`."""
    statement = (
        select(LedgerEntry)
        .where(
            LedgerEntry.letter_id == letter_id,
            col(LedgerEntry.seq) > after,
            col(LedgerEntry.seq) <= until,
        )
        .order_by(col(LedgerEntry.seq))
        .limit(limit)
    )
    return (await session.exec(statement)).all()


async def find_receipt(
    session: AsyncSession, letter_id: int, receipt: str
) -> Sequence[LedgerEntry]:
    """The entries of the signature this receipt belongs to, oldest first."""
    statement = (
        select(LedgerEntry)
        .where(LedgerEntry.letter_id == letter_id, LedgerEntry.commitment == commitment(receipt))
        .order_by(col(LedgerEntry.seq))
    )
    return (await session.exec(statement)).all()
