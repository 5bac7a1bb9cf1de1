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
`letters verify-ledger`. The format is versioned per entry; never change how v1 hashes.
Entries of the four original kinds are written in format v1. Kinds about the letter rather
than a signature (`delivered`) are written in format v2, which
chains one more field: `digest`, the SHA-256 of a document the entry vouches for (for a
delivery, the signed snapshot delivered with it). See docs/ledger.md.
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
FORMAT_V2 = "letters-ledger-v2"
FORMATS = {1: FORMAT, 2: FORMAT_V2}
RECEIPT_PREFIX = "letters-receipt-v1:"
# How many signatures each kind adds to the count.
EFFECT = {
    LedgerKind.signed: 1,
    LedgerKind.changed: 0,
    LedgerKind.withdrawn: -1,
    LedgerKind.invalidated: -1,
    LedgerKind.delivered: 0,
}
# The kinds format v1 knows; an entry of any other kind is written in format v2.
V1_KINDS = frozenset(
    {LedgerKind.signed, LedgerKind.changed, LedgerKind.withdrawn, LedgerKind.invalidated}
)
# Kinds about the letter, not a signature: no organization, no name, and this commitment.
LETTER_KINDS = frozenset({LedgerKind.delivered})
NO_SIGNATURE = ""
# Kinds whose entries carry the SHA-256 of a document (format v2 only).
WITH_DIGEST = frozenset({LedgerKind.delivered})
HEX64 = frozenset("0123456789abcdef")


def new_receipt() -> str:
    """A random receipt for the signer: 128 bits in hex, easy to copy (and, unlike base64,
    never starting with "-", which a command line would take for an option)."""
    return secrets.token_hex(16)


def commitment(receipt: str) -> str:
    """The commitment a receipt finds. Receipts are lower-case hex: one typed or copied
    with spaces around it or in upper case finds the same entries."""
    return hashlib.sha256((RECEIPT_PREFIX + receipt.strip().lower()).encode()).hexdigest()


def name_digest(salt: str, name: str, title: str) -> str:
    data = bytes.fromhex(salt) + json.dumps([name, title], ensure_ascii=False).encode()
    return hashlib.sha256(data).hexdigest()


def version_of(entry: Mapping[str, Any]) -> int:
    """An entry's format: `v` in its public JSON (entries without one are v1)."""
    version = entry.get("v", 1)
    if type(version) is not int or version not in FORMATS:
        raise LedgerError(f"entry {entry.get('seq')}: unknown format version {version!r}")
    return version


def entry_hash(entry: Mapping[str, Any]) -> str:
    """The hash of an entry: SHA-256 of its chained fields as canonical JSON.

    v1 chains format, seq, kind, day, organization, named, name_digest, commitment and
    prev; v2 chains the same and `digest`.
    """
    version = version_of(entry)
    chained = {
        "format": FORMATS[version],
        "seq": entry["seq"],
        "kind": entry["kind"],
        "day": entry["day"],
        "organization": entry["organization"],
        "named": entry["named"],
        "name_digest": entry["name_digest"],
        "commitment": entry["commitment"],
        "prev": entry["prev"],
    }
    if version == 2:
        chained["digest"] = entry["digest"]
    canonical = json.dumps(chained, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


# The end of an entry's canonical JSON, around its two last keys: "prev" and "seq" sort
# after every other chained field, so an entry hashes as prefix + prev + SEQ + seq + "}".
SEQ = '","seq":'


def chain_prefix(
    kind: str, day: str, organization: str, named: bool, name_digest: str, commitment: str
) -> str:
    """An entry's canonical JSON up to its `prev` hash, for hashing where `prev` and `seq`
    are only known inside the statement that appends it (letters.record.signing):

        entry_hash = sha256(prefix + prev + SEQ + str(seq) + "}")

    is exactly `entry_hash()` of the same entry (tests/record/test_ledger.py checks it).
    """
    chained = {
        "format": FORMAT,
        "seq": 0,
        "kind": kind,
        "day": day,
        "organization": organization,
        "named": named,
        "name_digest": name_digest,
        "commitment": commitment,
        "prev": "",
    }
    canonical = json.dumps(chained, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    tail = '"prev":"' + SEQ + "0}"
    assert canonical.endswith(tail)
    return canonical[: -len(SEQ + "0}")]


def chained_hash(prefix: str, prev: str, seq: int) -> str:
    """What `chain_prefix` stands for: the entry's hash once `prev` and `seq` are known."""
    return hashlib.sha256(f"{prefix}{prev}{SEQ}{seq}}}".encode()).hexdigest()


def new_name(named: bool, name: str, title: str) -> tuple[str, str]:
    """(salt, digest) of a new entry: a fresh salt and the digest of the name if it is
    shown, else both empty."""
    if not named:
        return "", ""
    salt = secrets.token_hex(16)
    return salt, name_digest(salt, name, title)


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
    digest: str = "",
) -> LedgerEntry:
    """Append an entry, in the caller's transaction.

    Entries of the v1 kinds are written in format v1; others in v2, with `digest` (the
    hex SHA-256 of the document the entry vouches for, for kinds in WITH_DIGEST).

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
        format_version=1 if kind in V1_KINDS else 2,
        digest=digest,
    )
    entry.entry_hash = entry_hash(public_entry(entry))
    session.add(entry)
    await session.exec(
        update(Letter)
        .where(col(Letter.id) == letter_id)
        .values(ledger_head=entry.entry_hash, ledger_prev=prev)
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
    """An entry as published (one line of the ledger download); v2 entries add `v` and
    `digest`, v1 entries read exactly as before versions existed."""
    published: dict[str, Any] = {
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
    if entry.format_version != 1:
        published["v"] = entry.format_version
        published["digest"] = entry.digest
    return published


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
    # Which format each entry uses, as runs: [version, first seq, last seq]
    formats: list[list[int]] = field(default_factory=list)
    # Entries about the letter itself (deliveries): (seq, kind, day, digest)
    events: list[tuple[int, str, str, str]] = field(default_factory=list)


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
        seq, kind = entry["seq"], entry["kind"]
        _note_format(result, version_of(entry), seq)
        if kind in LETTER_KINDS:
            result.events.append((seq, kind, entry["day"], entry["digest"]))
        else:
            _count(entry, result)
        result.length, result.head = seq, entry["hash"]
        if seq == checkpoint:
            result.at_checkpoint = _counted(result)
    return _counted(result, into=result)


def _count(entry: Mapping[str, Any], result: Recount) -> None:
    """Apply an entry about a signature to the set of counted signatures."""
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


def _note_format(result: Recount, version: int, seq: int) -> None:
    runs = result.formats
    if runs and runs[-1][0] == version and runs[-1][2] == seq - 1:
        runs[-1][2] = seq
    else:
        runs.append([version, seq, seq])


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
    version = version_of(entry)
    kind = entry["kind"]
    if kind not in EFFECT or (version == 1 and kind not in V1_KINDS):
        raise LedgerError(f"entry {seq}: unknown kind {kind!r} in format v{version}")
    if version == 2:
        _check_digest(entry, seq, kind)
    if kind in LETTER_KINDS and (
        entry["organization"] or entry["named"] or entry["commitment"] != NO_SIGNATURE
    ):
        raise LedgerError(f"entry {seq}: a {kind} entry must name no signature or organization")
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


def _check_digest(entry: Mapping[str, Any], seq: int, kind: str) -> None:
    digest = entry.get("digest")
    if type(digest) is not str:
        raise LedgerError(f"entry {seq}: field 'digest' is missing or wrong")
    if kind in WITH_DIGEST:
        if len(digest) != 64 or not set(digest) <= HEX64:
            raise LedgerError(f"entry {seq}: a {kind} entry needs a SHA-256 digest")
    elif digest:
        raise LedgerError(f"entry {seq}: a {kind} entry has no digest")


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
