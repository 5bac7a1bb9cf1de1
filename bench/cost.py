"""What one sign request and one confirmation cost, measured apart, in CPU time.

    python -m bench.cost [--duration 20] [--workers 1] [--connections 8]

Runs the real server (bench/serve.py) on the bench database and, one after the other:
  sign+mail   sign requests only, MAIL_IN_APP=true, each email sent by the app over SMTP
              to bench/sink.py (the production default path);
  confirm     confirmations only, of the links the first phase produced (GET /healthz
              fills in, and is counted, if they run out);
  sign        sign requests only, MAIL_IN_APP=false (the email stays in the outbox).
For each phase: requests/s, and CPU per request of the app workers, of the PostgreSQL
backends of the bench database and of the SMTP sink. The sum for sign+mail and confirm is
the CPU one confirmed signature costs on this machine.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import common, storm
from bench.common import log


def phase(
    name: str,
    workers: int,
    db_url: str,
    args: argparse.Namespace,
    workdir: Path,
    *,
    mail: str,
    mode: str,
    tokens: Path,
    duration: float,
) -> dict[str, Any]:
    if mail == "smtp":
        source, mail_env, _ = storm.start_token_source("smtp", db_url, tokens, workdir)
    else:
        source, mail_env = None, {"MAIL_IN_APP": "false"}
    app = storm.app_server(workers, db_url, mail_env, args, workdir / f"cost-{name}.log")
    stop_when = None
    if mode == "confirm":
        # Stop as the links run out, so that /healthz fillers hardly count.
        links = tokens.read_text().count(" END\n")
        used_before = common.letter_counts(db_url)["used_links"]

        def stop_when() -> bool:
            return bool(common.used_links(db_url) - used_before >= links - args.connections)

    xacts_before = common.transactions(args.database)
    pg_before = common.pg_started()
    try:
        with common.running(app):
            quiet = common.wait_quiet(args.quiet_wait)
            log(f"  {name}: machine busy {quiet:.2f} cores before it")
            load = storm.run_load(
                app,
                source,
                "smtp sink",
                db_url,
                args.database,
                tokens,
                mode=mode,
                duration=duration,
                threads=args.threads,
                connections=args.connections,
                stop_when=stop_when,
            )
            time.sleep(1)
    finally:
        common.stop_group(source)
    time.sleep(1)
    # The app has stopped, so its backends have exited and reported their transactions
    # (including the server's own start-up reads: a few, against thousands).
    xacts = common.transactions(args.database) - xacts_before
    pg_restarted = common.pg_started() != pg_before
    counts = load.counts
    requests = counts.get("signed", 0) + counts.get("confirmed", 0)
    per = {
        k: 1000 * v / max(requests, 1)
        for k, v in load.cpu.items()
        if k in ("app workers", "smtp sink", "postgresql backends of the bench database")
    }
    out = {
        "phase": name,
        "workers": workers,
        "requests_per_s": requests / load.result.duration,
        "answered": requests,
        "failed": counts.get("failed", 0),
        "filler": counts.get("filler", 0),
        "cpu_ms_per_request": per,
        "transactions_per_request": xacts / max(requests, 1),
        "cpu_cores": load.cpu_cores,
        "p50_ms": load.result.latency_p50_ms,
        "p99_ms": load.result.latency_p99_ms,
        "pg_waits": load.waits,
        "pg_wait_statements": load.wait_statements,
        "memory": load.memory,
        "busy_before": quiet,
        "pg_restarted": pg_restarted,
    }
    log(
        f"  {name}: {out['requests_per_s']:.0f}/s, CPU ms per request "
        + ", ".join(f"{k} {v:.2f}" for k, v in per.items())
    )
    return out


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per phase")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--no-access-log", action="store_true")
    parser.add_argument("--quiet-wait", type=float, default=20.0)
    parser.add_argument("--database", default=common.DEFAULT_DB)
    parser.add_argument("--keep-db", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    args.client_ips = 0
    info = common.machine()
    common.print_machine(info)
    name = common.check_db_name(args.database)
    if args.keep_db and common.database_exists(name):
        db_url = common.database_url(name)
    else:
        db_url = common.reset_database(name)
    results = []
    with tempfile.TemporaryDirectory(prefix="letters-cost-") as tmp:
        workdir = Path(tmp)
        tokens = workdir / "tokens.txt"
        tokens.write_text("")
        w = args.workers
        results.append(
            phase(
                "sign+mail",
                w,
                db_url,
                args,
                workdir,
                mail="smtp",
                mode="sign",
                tokens=tokens,
                duration=args.duration,
            )
        )
        results.append(
            phase(
                "confirm",
                w,
                db_url,
                args,
                workdir,
                mail="none",
                mode="confirm",
                tokens=tokens,
                duration=args.duration,
            )
        )
        results.append(
            phase(
                "sign",
                w,
                db_url,
                args,
                workdir,
                mail="none",
                mode="sign",
                tokens=workdir / "unused.txt",
                duration=args.duration,
            )
        )
    counts = common.letter_counts(db_url)
    print(
        f"\ncost per request: workers={args.workers}, wrk -t{args.threads} "
        f"-c{args.connections}, access log {'off' if args.no_access_log else 'on'}"
    )
    print(
        f"  {'phase':10} {'req/s':>6} {'app ms':>7} {'db ms':>6} {'smtp sink ms':>12} "
        f"{'p99 ms':>7} {'db xacts':>8}  notes"
    )
    for r in results:
        c = r["cpu_ms_per_request"]
        notes = []
        if r["filler"]:
            notes.append(f"{r['filler']} /healthz fillers (links ran out)")
        if r["failed"]:
            notes.append(f"{r['failed']} failed")
        if r["pg_restarted"]:
            notes.append("PostgreSQL was restarted during this phase: figures invalid")
        notes.append(
            f"other processes {r['cpu_cores'].get('other processes on the machine', 0):.2f} cores"
        )
        print(
            f"  {r['phase']:10} {r['requests_per_s']:6.0f} {c.get('app workers', 0):7.2f} "
            f"{c.get('postgresql backends of the bench database', 0):6.2f} "
            f"{c.get('smtp sink', 0):12.2f} {r['p99_ms']:7.1f} "
            f"{r['transactions_per_request']:8.2f}  {'; '.join(notes)}"
        )
    total = {
        k: results[0]["cpu_ms_per_request"].get(k, 0) + results[1]["cpu_ms_per_request"].get(k, 0)
        for k in ("app workers", "postgresql backends of the bench database", "smtp sink")
    }
    print(
        "  one confirmed signature (sign+mail, then confirm): "
        + ", ".join(f"{k} {v:.1f} ms" for k, v in total.items())
        + f"; total {sum(total.values()):.1f} ms of CPU"
    )
    print(f"  counts exact afterwards: {not common.exact(counts)}")
    if args.json:
        args.json.write_text(
            json.dumps({"machine": info, "results": results}, indent=1, default=str)
        )
    return results


if __name__ == "__main__":
    main()
