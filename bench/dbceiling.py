# ruff: noqa: E501
"""The database alone: how many sign + confirm transaction pairs PostgreSQL sustains here.

    python -m bench.dbceiling [--duration 20] [--clients 32]

Runs pgbench (loopback, prepared statements) with a script that sends, statement by
statement, what the app sends for one signature: the sign transaction (the three
rate-limit upserts on the same per-IP and per-domain rows, the pending signature, the
outbox email) and then the confirm transaction (read the link's pending signature and the
letter, claim the link, insert the signature, update the letter's counters and the
organization count, and the daily count where the schema has one). Each pgbench
"transaction" is one such pair, so its tps is confirmed signatures per second with no
Python, HTTP or SMTP in the way: a ceiling for the app on this machine, not a figure of it.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from bench import common
from bench.common import SLUG

SIGN = """\\set n random(1, 2000000000)
BEGIN;
INSERT INTO rate_limit_hit (key, window_start, hits, expires_at) VALUES ('addr-' || :n || '-' || :client_id || md5(clock_timestamp()::text), 0, 1, now() + interval '1 hour') ON CONFLICT (key, window_start) DO UPDATE SET hits = rate_limit_hit.hits + 1 RETURNING hits;
INSERT INTO rate_limit_hit (key, window_start, hits, expires_at) VALUES ('ip-bench-127.0.0.1', 0, 1, now() + interval '1 hour') ON CONFLICT (key, window_start) DO UPDATE SET hits = rate_limit_hit.hits + 1 RETURNING hits;
INSERT INTO rate_limit_hit (key, window_start, hits, expires_at) VALUES ('dom-bench-microsoft.com', 0, 1, now() + interval '1 hour') ON CONFLICT (key, window_start) DO UPDATE SET hits = rate_limit_hit.hits + 1 RETURNING hits;
INSERT INTO pending_signature (letter_id, email_hash, domain, organization, sealed_name, show_name, nonce_hash, created_at, expires_at) VALUES (LETTER_ID, md5(:n || '-' || :client_id || clock_timestamp()::text) || md5(random()::text), 'microsoft.com', 'Microsoft', repeat('s', 90), false, md5(random()::text) || md5(clock_timestamp()::text), now(), now() + interval '1 day') RETURNING id AS pending_id \\gset
INSERT INTO outbox_message (id, sealed, created_at, next_attempt_at, attempts) VALUES ((random() * 9e18)::bigint, repeat('s', 2500), now(), now(), 0) RETURNING id;
COMMIT;
"""

CONFIRM = """BEGIN;
SELECT * FROM pending_signature WHERE id = :pending_id;
SELECT * FROM letter WHERE id = LETTER_ID;
UPDATE pending_signature SET used_at = now() WHERE id = :pending_id AND used_at IS NULL AND expires_at > now();
INSERT INTO signature (letter_id, email_hash, domain, organization, name, title, sealed_name, show_name, verified_at, updated_at) SELECT letter_id, email_hash, domain, organization, '', '', sealed_name, show_name, now(), now() FROM pending_signature WHERE id = :pending_id ON CONFLICT (letter_id, email_hash) DO NOTHING RETURNING id;
UPDATE letter SET verified_count = verified_count + 1, hidden_count = hidden_count + 1, updated_at = now() WHERE id = LETTER_ID;
INSERT INTO organization_count (letter_id, organization, count) VALUES (LETTER_ID, 'Microsoft', 1) ON CONFLICT (letter_id, organization) DO UPDATE SET count = organization_count.count + 1;
DAILY
COMMIT;
"""

# The same work in one statement per transaction (each one its own implicit transaction):
# what the database could sustain if the app sent each operation in one round trip.
LEAN_SIGN = """\\set n random(1, 2000000000)
WITH rl AS (INSERT INTO rate_limit_hit (key, window_start, hits, expires_at) VALUES ('addr-' || :n || '-' || :client_id || md5(clock_timestamp()::text), 0, 1, now() + interval '1 hour'), ('ip-bench-127.0.0.1', 0, 1, now() + interval '1 hour'), ('dom-bench-microsoft.com', 0, 1, now() + interval '1 hour') ON CONFLICT (key, window_start) DO UPDATE SET hits = rate_limit_hit.hits + 1 RETURNING hits), p AS (INSERT INTO pending_signature (letter_id, email_hash, domain, organization, sealed_name, show_name, nonce_hash, created_at, expires_at) SELECT LETTER_ID, md5(:n || '-' || :client_id || clock_timestamp()::text) || md5(random()::text), 'microsoft.com', 'Microsoft', repeat('s', 90), false, md5(random()::text) || md5(clock_timestamp()::text), now(), now() + interval '1 day' WHERE NOT EXISTS (SELECT 1 FROM rl WHERE hits > 2000000000) RETURNING id), o AS (INSERT INTO outbox_message (id, sealed, created_at, next_attempt_at, attempts) SELECT (random() * 9e18)::bigint, repeat('s', 2500), now(), now(), 0 FROM p RETURNING id) SELECT (SELECT id FROM p) AS pending_id, (SELECT id FROM o) AS outbox_id \\gset
"""

LEAN_CONFIRM = """WITH claimed AS (UPDATE pending_signature SET used_at = now() WHERE id = :pending_id AND used_at IS NULL AND expires_at > now() RETURNING letter_id, email_hash, domain, organization, sealed_name, show_name), ins AS (INSERT INTO signature (letter_id, email_hash, domain, organization, name, title, sealed_name, show_name, verified_at, updated_at) SELECT letter_id, email_hash, domain, organization, '', '', sealed_name, show_name, now(), now() FROM claimed ON CONFLICT (letter_id, email_hash) DO NOTHING RETURNING letter_id, organization, show_name), o AS (INSERT INTO organization_count (letter_id, organization, count) SELECT letter_id, organization, 1 FROM ins ON CONFLICT (letter_id, organization) DO UPDATE SET count = organization_count.count + 1 RETURNING 1), LEAN_DAILY l AS (UPDATE letter SET verified_count = verified_count + 1, named_count = named_count + (SELECT count(*) FROM ins WHERE show_name), hidden_count = hidden_count + (SELECT count(*) FROM ins WHERE NOT show_name), updated_at = now() WHERE id = LETTER_ID AND EXISTS (SELECT 1 FROM ins) RETURNING id) SELECT (SELECT count(*) FROM l), (SELECT count(*) FROM o);
"""

LEAN_DAILY_CTE = (
    "d AS (INSERT INTO daily_count (letter_id, day, organization, count) SELECT letter_id, "
    "to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD'), organization, 1 FROM ins ON CONFLICT "
    "(letter_id, day, organization) DO UPDATE SET count = daily_count.count + 1 RETURNING 1),"
)

DAILY = (
    "INSERT INTO daily_count (letter_id, day, organization, count) VALUES (LETTER_ID, "
    "to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD'), 'Microsoft', 1) ON CONFLICT "
    "(letter_id, day, organization) DO UPDATE SET count = daily_count.count + 1;"
)


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=20)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--database", default=common.DEFAULT_DB)
    parser.add_argument("--quiet-wait", type=float, default=20.0)
    parser.add_argument(
        "--variant",
        choices=("app", "lean", "lean-unlogged", "all"),
        default="all",
        help="app: the statements as the app sends them; lean: one statement per transaction; "
        "lean-unlogged: lean, with the rate-limit counters in an UNLOGGED copy of their table",
    )
    args = parser.parse_args(argv)
    info = common.machine()
    common.print_machine(info)
    name = common.check_db_name(args.database)
    db_url = common.reset_database(name)
    with psycopg.connect(db_url) as conn:
        has_daily = conn.execute("SELECT to_regclass('daily_count')").fetchone()[0] is not None  # type: ignore[index]
    results = {}
    variants = ["app", "lean", "lean-unlogged"] if args.variant == "all" else [args.variant]
    for variant in variants:
        db_url = common.reset_database(name)
        with psycopg.connect(db_url) as conn:
            letter_id = conn.execute("SELECT id FROM letter WHERE slug = %s", (SLUG,)).fetchone()[0]  # type: ignore[index]
        if variant == "app":
            script = SIGN + CONFIRM.replace("DAILY", DAILY if has_daily else "")
        else:
            script = LEAN_SIGN + LEAN_CONFIRM.replace(
                "LEAN_DAILY", LEAN_DAILY_CTE if has_daily else ""
            )
        if variant == "lean-unlogged":
            # Rate-limit counters need no crash safety: an UNLOGGED table writes no WAL.
            with psycopg.connect(db_url, autocommit=True) as conn:
                conn.execute(
                    "CREATE UNLOGGED TABLE rate_limit_hit_unlogged "
                    "(LIKE rate_limit_hit INCLUDING ALL)"
                )
            script = script.replace("rate_limit_hit", "rate_limit_hit_unlogged")
        results[variant] = run_pgbench(
            script.replace("LETTER_ID", str(letter_id)), name, db_url, args, variant
        )
    return results


def run_pgbench(
    script: str, name: str, db_url: str, args: argparse.Namespace, variant: str
) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="letters-dbceiling-") as tmp:
        path = Path(tmp) / "signature.sql"
        path.write_text(script)
        quiet = common.wait_quiet(args.quiet_wait)
        pg0, sys0 = common.postgres_cpu(), common.system_busy()
        started = time.monotonic()
        run = subprocess.run(
            [
                "pgbench",
                "-n",
                "-M",
                "prepared",
                "-c",
                str(args.clients),
                "-j",
                str(args.threads),
                "-T",
                str(args.duration),
                "-f",
                str(path),
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                name,
            ],
            capture_output=True,
            text=True,
            timeout=args.duration + 120,
            check=False,
        )
        wall = time.monotonic() - started
        pg1, sys1 = common.postgres_cpu(), common.system_busy()
    if run.returncode != 0:
        raise SystemExit(f"pgbench failed:\n{run.stdout}\n{run.stderr}")
    tps = float(re.search(r"tps = ([\d.]+)", run.stdout).group(1))  # type: ignore[union-attr]
    latency = re.search(r"latency average = ([\d.]+) ms", run.stdout)
    counts = common.letter_counts(db_url)
    pg_cores = (pg1 - pg0) / wall
    busy = (sys1[0] - sys0[0]) / wall
    label = {
        "app": "statements as the app sends them (BEGIN, 6 + 7 statements, COMMIT)",
        "lean": "one statement per transaction (sign, then confirm)",
        "lean-unlogged": "one statement per transaction, rate limits in an UNLOGGED table",
    }[variant]
    print(
        f"\ndatabase ceiling, {label}: pgbench -M prepared -c {args.clients} "
        f"-j {args.threads} -T {args.duration} (machine busy {quiet:.2f} cores before)"
    )
    print(
        f"  confirmed signature pairs/s: {tps:.0f}  (average latency of a pair "
        f"{latency.group(1) if latency else '?'} ms)"
    )
    print(
        f"  CPU: PostgreSQL {pg_cores:.2f} cores, whole machine {busy:.2f} cores busy; "
        f"PostgreSQL CPU per pair {1000 * pg_cores / tps:.2f} ms"
    )
    problems = common.exact(counts)
    print(
        f"  verified_count afterwards {counts['verified_count']}, signature rows "
        f"{counts['signature_rows']}, exact: {problems or 'yes'}"
    )
    return {"tps": tps, "pg_cores": pg_cores, "busy": busy, "exact": not problems}


if __name__ == "__main__":
    main()
