"""Seed a letter with many verified signatures in PostgreSQL, fast (COPY), counts exact.

    python -m bench.seed --signatures 1000000 [--database letters_bench] [--fresh]

Adds N verified signatures to the demo letter, spread over its allowed domains (about
half Microsoft, 30 % GitHub, 20 % LinkedIn; a third named) and over the last 23 hours (the
day a letter goes viral), each with the used pending signature (magic link) it came from,
still unexpired, as the app leaves them that day (its retention deletes expired ones). In the same
transaction it adds N to the letter's verified count, the named and hidden counts, and
each organization's count (and daily count, where the schema has them), so the counts
stay exact. The COPY skips the per-row foreign-key checks (session_replication_role =
replica; every row references the one letter, which exists). Then VACUUM ANALYZE, as
autovacuum would eventually, and a check that the counts are exact.

The email hashes are blake2b digests of "seed:<run>:<n>", so they can never collide with
the keyed hashes of real (or stormed) addresses.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import hashlib
import time

import psycopg

from bench import common
from bench.common import SLUG
from letters.record import ledger

SHARES = (("microsoft.com", 5), ("github.com", 3), ("linkedin.com", 2))
SIGNATURE_COLUMNS = (
    "letter_id, email_hash, domain, organization, name, title, show_name, commitment, "
    "verified_at, updated_at"
)
LEDGER_COLUMNS = (
    "letter_id, seq, kind, day, organization, named, name, title, name_salt, name_digest, "
    "commitment, prev_hash, entry_hash"
)
PENDING_COLUMNS = (
    "letter_id, email_hash, domain, organization, sealed_name, show_name, nonce_hash, "
    "created_at, expires_at, used_at"
)


def _commitment(run: int, n: int) -> str:
    """A unique commitment whose receipt nobody holds (seeded signatures have none)."""
    return hashlib.sha256(f"seed-receipt:{run}:{n}".encode()).hexdigest()


def seed(db_url: str, count: int, slug: str = SLUG, pending: bool = True) -> dict[str, object]:
    started = time.monotonic()
    run = time.time_ns()
    with psycopg.connect(db_url, autocommit=True) as conn:
        # After a storm the letter row has many dead versions (each confirmation updates
        # it); every foreign-key check of a COPYed row would walk them. Clean them first.
        conn.execute("VACUUM letter")
    with psycopg.connect(db_url) as conn:
        # The rows are built for an existing letter: skip the per-row foreign-key checks
        # (triggers), as a bulk load would. Counts are set below, in this transaction.
        conn.execute("SET session_replication_role = replica")
        row = conn.execute("SELECT id FROM letter WHERE slug = %s", (slug,)).fetchone()
        if row is None:
            raise SystemExit(f"no letter {slug!r} in this database")
        letter_id = row[0]
        organizations = dict(
            conn.execute(
                "SELECT domain, organization FROM allowed_domain WHERE letter_id = %s",
                (letter_id,),
            ).fetchall()
        )
        cycle = [d for d, share in SHARES if d in organizations for _ in range(share)]
        if not cycle:
            cycle = sorted(organizations)
        per_org: collections.Counter[str] = collections.Counter()
        per_day: collections.Counter[tuple[str, str]] = collections.Counter()
        named = 0
        now = dt.datetime.now(dt.UTC)
        # All within the last 23 hours (the day a letter goes viral), so that the links of
        # the pending rows are still unexpired and the app's retention keeps them.
        start = now - dt.timedelta(hours=23)
        step = dt.timedelta(hours=23) / max(count, 1)
        expires = dt.timedelta(days=1)
        with conn.cursor() as cur:
            with cur.copy(f"COPY signature ({SIGNATURE_COLUMNS}) FROM STDIN") as copy:
                for n in range(count):
                    domain = cycle[n % len(cycle)]
                    organization = organizations[domain]
                    shown = n % 3 == 0
                    named += shown
                    per_org[organization] += 1
                    email_hash = hashlib.blake2b(f"seed:{run}:{n}".encode(), digest_size=32)
                    at = start + n * step
                    per_day[(at.date().isoformat(), organization)] += 1
                    copy.write_row(
                        (
                            letter_id,
                            email_hash.hexdigest(),
                            domain,
                            organization,
                            f"Seed Signer {n}" if shown else "",
                            "Engineer" if shown else "",
                            shown,
                            _commitment(run, n),
                            at,
                            at,
                        )
                    )
            copied = time.monotonic()
            common.log(f"  signature: {count} rows in {copied - started:.0f} s")
            # Each signature's "signed" entry in the letter's public ledger, chained on
            # from its current head, as the app writes them (letters.record.ledger).
            length, head = cur.execute(
                "SELECT ledger_length, ledger_head FROM letter WHERE id = %s FOR UPDATE",
                (letter_id,),
            ).fetchone()
            with cur.copy(f"COPY ledger_entry ({LEDGER_COLUMNS}) FROM STDIN") as copy:
                for n in range(count):
                    domain = cycle[n % len(cycle)]
                    shown = n % 3 == 0
                    at = start + n * step
                    name, title = (f"Seed Signer {n}", "Engineer") if shown else ("", "")
                    salt = hashlib.blake2b(f"salt:{run}:{n}".encode(), digest_size=16).hexdigest()
                    salt = salt if shown else ""
                    entry = {
                        "seq": length + n + 1,
                        "kind": "signed",
                        "day": at.date().isoformat(),
                        "organization": organizations[domain],
                        "named": shown,
                        "name_digest": ledger.name_digest(salt, name, title) if shown else "",
                        "commitment": _commitment(run, n),
                        "prev": head,
                    }
                    head = ledger.entry_hash(entry)
                    copy.write_row(
                        (
                            letter_id,
                            entry["seq"],
                            "signed",
                            entry["day"],
                            entry["organization"],
                            shown,
                            name,
                            title,
                            salt,
                            entry["name_digest"],
                            entry["commitment"],
                            entry["prev"],
                            head,
                        )
                    )
            cur.execute(
                "UPDATE letter SET ledger_length = %s, ledger_head = %s WHERE id = %s",
                (length + count, head, letter_id),
            )
            if count:
                # The schema of this app keeps the head the last entry chains on, too.
                cur.execute(
                    "UPDATE letter SET ledger_prev = %s WHERE id = %s",
                    (entry["prev"], letter_id),
                )
            common.log(f"  ledger_entry: {count} rows in {time.monotonic() - copied:.0f} s")
            copied = time.monotonic()
            if pending:
                with cur.copy(f"COPY pending_signature ({PENDING_COLUMNS}) FROM STDIN") as copy:
                    for n in range(count):
                        domain = cycle[n % len(cycle)]
                        shown = n % 3 == 0
                        email_hash = hashlib.blake2b(f"seed:{run}:{n}".encode(), digest_size=32)
                        nonce = hashlib.sha256(f"seed-nonce:{run}:{n}".encode())
                        at = start + n * step
                        copy.write_row(
                            (
                                letter_id,
                                email_hash.hexdigest(),
                                domain,
                                organizations[domain],
                                "",  # used long ago: what it sealed does not matter here
                                shown,
                                nonce.hexdigest(),
                                at - dt.timedelta(minutes=1),
                                at + expires,
                                at,
                            )
                        )
                common.log(
                    f"  pending_signature: {count} rows in {time.monotonic() - copied:.0f} s"
                )
            cur.execute(
                "UPDATE letter SET verified_count = verified_count + %s, "
                "named_count = named_count + %s, hidden_count = hidden_count + %s, "
                "updated_at = now() WHERE id = %s",
                (count, named, count - named, letter_id),
            )
            for organization, n in per_org.items():
                cur.execute(
                    "INSERT INTO organization_count (letter_id, organization, count) "
                    "VALUES (%s, %s, %s) ON CONFLICT (letter_id, organization) "
                    "DO UPDATE SET count = organization_count.count + EXCLUDED.count",
                    (letter_id, organization, n),
                )
            daily = cur.execute("SELECT to_regclass('daily_count')").fetchone()
            if daily is not None and daily[0] is not None:
                # Newer schemas also count per UTC day and organization: keep those exact too.
                for (day, organization), n in per_day.items():
                    cur.execute(
                        "INSERT INTO daily_count (letter_id, day, organization, count) "
                        "VALUES (%s, %s, %s, %s) ON CONFLICT (letter_id, day, organization) "
                        "DO UPDATE SET count = daily_count.count + EXCLUDED.count",
                        (letter_id, day, organization, n),
                    )
        conn.commit()
    committed = time.monotonic()
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE signature")
        conn.execute("VACUUM ANALYZE ledger_entry")
        conn.execute("VACUUM ANALYZE pending_signature")
        conn.execute("VACUUM ANALYZE organization_count")
        conn.execute("VACUUM ANALYZE letter")
        sizes = dict(
            conn.execute(
                "SELECT relname, pg_size_pretty(pg_total_relation_size(oid)) FROM pg_class "
                "WHERE relname IN ('signature', 'pending_signature')"
            ).fetchall()
        )
    finished = time.monotonic()
    counts = common.letter_counts(db_url, slug)
    return {
        "signatures_added": count,
        "copy_and_commit_s": committed - started,
        "vacuum_analyze_s": finished - committed,
        "total_s": finished - started,
        "sizes": sizes,
        "counts": counts,
        "problems": common.exact(counts),
    }


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--signatures", type=int, default=1_000_000)
    parser.add_argument("--database", default=common.DEFAULT_DB)
    parser.add_argument(
        "--fresh", action="store_true", help="recreate the database with only the demo letter first"
    )
    parser.add_argument(
        "--no-pending",
        action="store_true",
        help="do not add the used pending signatures the links came from",
    )
    args = parser.parse_args(argv)
    name = common.check_db_name(args.database)
    if args.fresh or not common.database_exists(name):
        db_url = common.reset_database(name)
    else:
        db_url = common.database_url(name)
    result = seed(db_url, args.signatures, pending=not args.no_pending)
    c = result["counts"]
    assert isinstance(c, dict)
    print(
        f"seeded {args.signatures} verified signatures into {name} in "
        f"{result['total_s']:.0f} s (COPY + commit {result['copy_and_commit_s']:.0f} s, "
        f"VACUUM ANALYZE {result['vacuum_analyze_s']:.0f} s); sizes {result['sizes']}"
    )
    print(
        f"letter now: verified {c['verified_count']} = named {c['named_count']} + hidden "
        f"{c['hidden_count']}; organizations sum {c['organization_sum']}; signature rows "
        f"{c['signature_rows']}; exact: "
        f"{'yes' if not result['problems'] else 'NO ' + str(result['problems'])}"
    )
    return result


if __name__ == "__main__":
    main()
