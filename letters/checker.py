"""`letters verify-ledger`: recompute a letter's count from its public ledger, and check a
signed snapshot and a receipt against it, with nothing but public data.

It needs no database and no secret: a journalist runs it against the site (a letter's
address) or against files they downloaded earlier.
"""

from __future__ import annotations

import hashlib
import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from letters.models import LedgerKind
from letters.record import ledger, snapshots

TIMEOUT = 60
LETTER_PATH = re.compile(r"^(?P<prefix>.*?)/(?:api/)?letters/(?P<slug>[a-z0-9-]{1,80})(?:/.*)?$")


class CheckFailed(Exception):
    """Something did not verify: a tampered or inconsistent record. The message says what."""


class SourceError(Exception):
    """A file or address could not be read."""


@dataclass
class Sources:
    ledger: str
    snapshot: str | None = None
    jwks: str | None = None


def sources_for(target: str, snapshot: str | None, jwks: str | None) -> Sources:
    """Where to read each part. For a letter's address, the site's own downloads."""
    if not target.startswith(("http://", "https://")):
        return Sources(target, snapshot, jwks)
    match = LETTER_PATH.match(target.split("?")[0].split("#")[0])
    if not match:
        raise SourceError(f"{target} is not the address of a letter (…/letters/SLUG)")
    base, slug = match["prefix"], match["slug"]
    return Sources(
        f"{base}/api/letters/{slug}/ledger",
        snapshot or f"{base}/api/letters/{slug}/snapshot",
        jwks or f"{base}/.well-known/jwks.json",
    )


def _lines(source: str) -> Iterator[str]:
    if source.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(source, timeout=TIMEOUT) as response:  # noqa: S310
                for raw in response:
                    yield raw.decode("utf-8")
        except urllib.error.HTTPError as error:
            raise SourceError(f"{source}: the server answered {error.code}") from None
        except (urllib.error.URLError, OSError) as error:
            raise SourceError(f"{source}: {getattr(error, 'reason', error)}") from None
        return
    try:
        with Path(source).open(encoding="utf-8") as file:
            yield from file
    except OSError as error:
        raise SourceError(f"{source}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise SourceError(f"{source}: not UTF-8 text") from None


def read_text(source: str) -> str:
    return "".join(_lines(source))


def entries(source: str) -> Iterator[dict[str, Any]]:
    for number, line in enumerate(_lines(source), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            raise CheckFailed(f"line {number} of the ledger is not JSON") from None
        if not isinstance(entry, dict):
            raise CheckFailed(f"line {number} of the ledger is not a JSON object")
        yield entry


@dataclass
class Report:
    recount: ledger.Recount
    snapshot: dict[str, Any] | None = None
    key_id: str | None = None
    receipt_entries: list[int] = field(default_factory=list)
    receipt_counted: bool = False
    # The `delivered` entry whose digest is the snapshot's SHA-256, if there is one.
    delivered_at: int | None = None


def check(sources: Sources, receipt: str | None = None) -> Report:
    """Verify the ledger (and the snapshot, and a receipt). Raises CheckFailed/SourceError."""
    payload: dict[str, Any] | None = None
    header: dict[str, Any] = {}
    checkpoint = None
    token = ""
    if sources.snapshot:
        if not sources.jwks:
            raise SourceError("a snapshot needs the instance's public key (--jwks)")
        # The snapshot first: the ledger, read after it, holds at least what it signed.
        token = read_text(sources.snapshot)
        try:
            jwks = json.loads(read_text(sources.jwks))
        except ValueError:
            raise CheckFailed("the key set is not JSON") from None
        try:
            header, payload = snapshots.verify(token, jwks)
        except snapshots.SnapshotError as error:
            raise CheckFailed(f"snapshot: {error}") from None
        checkpoint = _snapshot_length(payload)
    try:
        recount = ledger.verify(entries(sources.ledger), checkpoint=checkpoint)
    except ledger.LedgerError as error:
        raise CheckFailed(f"ledger: {error}") from None
    report = Report(recount=recount, snapshot=payload, key_id=header.get("kid"))
    if payload is not None:
        _compare(payload, recount)
        report.delivered_at = _delivered_with(token, payload, recount)
    if receipt is not None:
        commit = ledger.commitment(receipt)
        report.receipt_entries = recount.history.get(commit, [])
        report.receipt_counted = commit in recount.active
    return report


def _snapshot_length(payload: dict[str, Any]) -> int:
    length = payload.get("ledger", {}).get("length") if isinstance(payload, dict) else None
    if type(length) is not int or length < 0:
        raise CheckFailed("snapshot: it names no ledger length")
    return length


def _compare(payload: dict[str, Any], recount: ledger.Recount) -> None:
    length = payload["ledger"]["length"]
    at = recount.at_checkpoint
    if at is None:
        raise CheckFailed(
            f"the snapshot signed a ledger of {length} entries, but the ledger has only "
            f"{recount.length}: entries were removed"
        )
    if at.head != payload["ledger"].get("head"):
        raise CheckFailed(
            f"entry {length} of the ledger is not the one the snapshot signed: "
            "the ledger was rewritten"
        )
    signed = {
        "verified": payload.get("verified_count"),
        "named": payload.get("named_count"),
        "hidden": payload.get("hidden_count"),
        "organizations": {
            item.get("name"): item.get("count") for item in payload.get("organizations") or []
        },
    }
    counted = {
        "verified": at.verified,
        "named": at.named,
        "hidden": at.hidden,
        "organizations": dict(at.organizations),
    }
    for name, value in counted.items():
        if signed[name] != value:
            raise CheckFailed(
                f"the snapshot's {name} count ({signed[name]}) is not what its ledger "
                f"entries add up to ({value})"
            )


def _delivered_with(token: str, payload: dict[str, Any], recount: ledger.Recount) -> int | None:
    """The `delivered` entry that vouches for this snapshot (its digest is the snapshot's
    SHA-256), if any. It must come right after the entries the snapshot signed."""
    digest = hashlib.sha256(token.strip().encode()).hexdigest()
    for seq, kind, _day, entry_digest in recount.events:
        if kind == LedgerKind.delivered and entry_digest == digest:
            if seq != payload["ledger"]["length"] + 1:
                raise CheckFailed(
                    f"entry {seq} delivered this snapshot, but the snapshot signed the "
                    f"ledger's first {payload['ledger']['length']} entries, not {seq - 1}"
                )
            return seq
    return None


def _runs(runs: list[list[int]]) -> str:
    """`[[1, 1, 40], [2, 41, 41]]` -> "v1 for entries 1-40, v2 for entry 41"."""
    parts = []
    for version, first, last in runs:
        where = f"entry {first:,}" if first == last else f"entries {first:,}-{last:,}"
        parts.append(f"v{version} for {where}")
    return ", ".join(parts)


def print_report(report: Report, out: TextIO) -> None:
    recount = report.recount
    print(f"Ledger OK: {recount.length:,} entries, head {recount.head}", file=out)
    if recount.formats:
        print(f"Formats: {_runs(recount.formats)}", file=out)
    print(
        f"Recounted: {recount.verified:,} verified signatures "
        f"({recount.named:,} named, {recount.hidden:,} hidden)",
        file=out,
    )
    for organization, count in sorted(recount.organizations.items(), key=lambda i: (-i[1], i[0])):
        print(f"  {organization}: {count:,}", file=out)
    if recount.redacted:
        print(f"{recount.redacted:,} entries had their name removed since (chain intact)", file=out)
    if report.snapshot is not None:
        payload = report.snapshot
        length = payload["ledger"]["length"]
        print(
            f"Snapshot OK: signed by {payload.get('iss')} (key {report.key_id}) at "
            f"{_moment(payload.get('iat'))}: {payload.get('verified_count'):,} verified, "
            f"matching the ledger's first {length:,} entries",
            file=out,
        )
    for seq, kind, day, digest in recount.events:
        print(f"Entry {seq:,}: {kind} on {day}, snapshot SHA-256 {digest}", file=out)
    if report.delivered_at is not None:
        print(f"This snapshot is the one delivered with entry {report.delivered_at:,}", file=out)
    if report.receipt_entries:
        state = "is counted" if report.receipt_counted else "is no longer counted"
        entries = ", ".join(str(seq) for seq in report.receipt_entries)
        print(f"Receipt: your signature {state} (ledger entries {entries})", file=out)


def _moment(iat: object) -> str:
    from datetime import UTC, datetime

    if type(iat) is not int:
        return "an unknown time"
    return datetime.fromtimestamp(iat, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
