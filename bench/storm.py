"""Signing storm on PostgreSQL: sign requests + confirmations per second, then exact counts.

    python -m bench.storm [--duration 60] [--workers 1,2,3] [--mail smtp|outbox] [--rounds 2]

Storms, in turn, the letters app and the lean reference (bench/lean.py: the same
guarantees written straight on psycopg, on the same schema), each on a fresh database,
alternating who goes first from one round to the next, and prints the ratio of their
confirmed signatures per second round by round: the yardstick is measured in the same
command, minutes apart, on the same machine (`--no-reference` storms the app alone).

Each run starts on loopback the server (bench/serve.py, same settings as `letters serve`)
on the bench database and one load generator: wrk with bench/storm.lua, whose connections
confirm a waiting magic link when there is one and otherwise sign with a new address
(`u{run}-{n}@microsoft.com`, github.com, linkedin.com; a third of them named).

Where the links come from (--mail):
  smtp    (default) MAIL_IN_APP=true and SMTP_URL pointing at bench/sink.py, an aiosmtpd
          sink on loopback: each sign request's email is sent by the app right after it
          answers, exactly as in production, and the sink hands the token to wrk. Measures
          the whole path, SMTP sending included (the sink's own CPU is shown apart).
  outbox  MAIL_IN_APP=false and bench/feeder.py taking the emails out of outbox_message
          in batches: measures sign + confirm without the cost of sending mail.

All load comes from 127.0.0.1, so the per-IP and per-domain rate limits are raised for the
bench (LIMIT_PER_IP, LIMIT_PER_DOMAIN); LIMIT_PER_ADDRESS stays at its default since every
address is new. The rate-limit upserts still run on every sign request.

Afterwards it checks that the counts are exact (see bench.common.exact), that the ledger
verifies and recounts to the counters (bench.common.ledger_problems), and that every
confirmation answered 200 is counted, and prints requests/s, confirmed signatures/s (also
per second from the database), the CPU used by each party, the PostgreSQL wait events seen
during the run and the peak RSS of each worker.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from bench import common
from bench.common import SLUG, Server, log

TARGET_RATIO = 0.8  # confirmed signatures per second, app / lean reference in the same run
LIMITS = {"LIMIT_PER_IP": "1000000000", "LIMIT_PER_DOMAIN": "1000000000"}


class WaitSampler(threading.Thread):
    """Samples pg_stat_activity for the bench database every `interval` seconds."""

    def __init__(self, db_url: str, database: str, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.db_url, self.database, self.interval = db_url, database, interval
        self.stop = threading.Event()
        self.samples = 0
        self.counts: collections.Counter[str] = collections.Counter()
        # What the backends that wait for a lock run, and what the lock holders ran last
        # before going idle inside their transaction (waiting for the app).
        self.statements: collections.Counter[str] = collections.Counter()

    def run(self) -> None:
        # pg_stat_activity covers the cluster: read it from the admin database, so the
        # samples add no transactions to the bench database.
        with psycopg.connect(common.PG_ADMIN_URL, autocommit=True) as conn:
            while not self.stop.wait(self.interval):
                rows = conn.execute(
                    "SELECT state, coalesce(wait_event_type || ':' || wait_event, 'CPU'), "
                    "left(regexp_replace(query, '\\s+', ' ', 'g'), 70) "
                    "FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid() "
                    "AND backend_type = 'client backend'",
                    (self.database,),
                ).fetchall()
                self.samples += 1
                for state, wait, query in rows:
                    if state == "active":
                        self.counts[f"active {wait}"] += 1
                        if wait.startswith("Lock:"):
                            self.statements[f"waits for lock: {query}"] += 1
                    else:
                        self.counts[str(state)] += 1
                        if state == "idle in transaction":
                            self.statements[f"idle in transaction after: {query}"] += 1

    def averages(self) -> dict[str, float]:
        """Average number of backends in each state/wait over the run."""
        n = max(self.samples, 1)
        return {key: value / n for key, value in self.counts.most_common()}

    def statement_averages(self) -> dict[str, float]:
        n = max(self.samples, 1)
        return {key: value / n for key, value in self.statements.most_common(8)}


def per_second(db_url: str, start: dt.datetime, end: dt.datetime) -> list[int]:
    """Signatures verified in each whole second of the run, from verified_at."""
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT date_trunc('second', verified_at) AS s, count(*) FROM signature "
            "WHERE verified_at >= %s AND verified_at < %s GROUP BY s ORDER BY s",
            (start, end),
        ).fetchall()
    seconds = {row[0]: row[1] for row in rows}
    first = start.replace(microsecond=0) + dt.timedelta(seconds=1)
    out = []
    moment = first
    while moment + dt.timedelta(seconds=1) <= end:
        out.append(int(seconds.get(moment, 0)))
        moment += dt.timedelta(seconds=1)
    return out


def links_used_since(db_url: str, since: dt.datetime) -> tuple[int, int]:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT email_hash) FROM pending_signature "
            "WHERE used_at >= %s",
            (since - dt.timedelta(seconds=1),),
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def start_token_source(
    mode: str, db_url: str, tokens: Path, workdir: Path
) -> tuple[subprocess.Popen[bytes], dict[str, str], Path]:
    log_path = workdir / f"{mode}.log"
    if mode == "smtp":
        port = common.free_port()
        command = [common.PYTHON, "-m", "bench.sink", "--port", str(port), "--tokens", str(tokens)]
        extra = {"MAIL_IN_APP": "true", "SMTP_URL": f"smtp://127.0.0.1:{port}?starttls=off"}
    else:
        command = [
            common.PYTHON,
            "-m",
            "bench.feeder",
            "--database-url",
            db_url,
            "--tokens",
            str(tokens),
        ]
        extra = {"MAIL_IN_APP": "false"}
    with log_path.open("wb") as out:
        process = subprocess.Popen(
            command,
            cwd=common.run_root(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 30
    while "ready" not in log_path.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            common.stop_group(process)
            raise RuntimeError(f"{mode} token source did not start:\n{log_path.read_text()}")
        time.sleep(0.1)
    return process, extra, log_path


@dataclass
class Load:
    """One wrk run of bench/storm.lua against a running app, with what it cost."""

    result: common.WrkResult
    started: dt.datetime
    ended: dt.datetime
    cpu: dict[str, float]  # CPU seconds per party
    cpu_cores: dict[str, float]  # the same, as cores busy on average
    waits: dict[str, float]
    wait_statements: dict[str, float]
    memory: list[dict[str, int]]
    counts: dict[str, int]  # the script's own counters (signed, confirmed, failed, filler ...)
    sessions: int  # PostgreSQL sessions opened to the bench database during the run


def run_load(
    app: Server,
    source: subprocess.Popen[bytes] | None,
    source_name: str,
    db_url: str,
    database: str,
    tokens: Path,
    *,
    mode: str,
    duration: float,
    threads: int,
    connections: int,
    client_ips: int = 0,
    stop_when: Callable[[], bool] | None = None,
) -> Load:
    run_id = f"{time.time_ns() % 10**10}{mode[0]}"
    sampler = WaitSampler(db_url, database)
    source_pid = source.pid if source is not None else 0
    cpu0 = {
        "app": app.cpu(),
        "source": common.cpu_seconds(source_pid) if source_pid else 0.0,
        "postgres": common.postgres_cpu(),
        "system": common.system_busy(),
    }
    backends = common.BackendCPU(database)
    backends.start()
    sampler.start()
    started = dt.datetime.now(dt.UTC)
    try:
        result = common.run_wrk(
            app.url,
            duration,
            threads,
            connections,
            script=common.run_root() / "bench" / "storm.lua",
            script_args=[str(tokens), run_id, SLUG, str(threads), str(client_ips), mode],
            stop_when=stop_when,
        )
    finally:
        sampler.stop.set()
    ended = dt.datetime.now(dt.UTC)
    backend_cpu = backends.stop()
    cpu1 = {
        "app": app.cpu(),
        "source": common.cpu_seconds(source_pid) if source_pid else 0.0,
        "postgres": common.postgres_cpu(),
        "system": common.system_busy(),
    }
    sampler.join(timeout=5)
    wall = (ended - started).total_seconds()
    busy = cpu1["system"][0] - cpu0["system"][0]
    cores = cpu1["system"][1] - cpu0["system"][1]
    cpu = {"app workers": cpu1["app"] - cpu0["app"]}
    if source is not None:
        cpu[source_name] = cpu1["source"] - cpu0["source"]
    cpu["postgresql (whole cluster)"] = cpu1["postgres"] - cpu0["postgres"]
    cpu["wrk"] = result.cpu
    cpu["other processes on the machine"] = busy - sum(cpu.values())
    # Part of the cluster's CPU: the backends serving the bench database.
    cpu["postgresql backends of the bench database"] = backend_cpu
    cpu_cores = {key: value / wall for key, value in cpu.items()}
    cpu_cores["idle"] = (cores - busy) / wall
    return Load(
        result=result,
        started=started,
        ended=ended,
        cpu=cpu,
        cpu_cores=cpu_cores,
        waits=sampler.averages(),
        wait_statements=sampler.statement_averages(),
        memory=app.memory(),
        counts={k: int(v) for k, v in result.extra.items() if v.isdigit()},
        sessions=backends.sessions,
    )


# What a run can storm: the app, or the lean reference (bench/lean.py) on the same schema.
TARGETS = {"app": "letters.app:create_app", "reference": "bench.lean:create_app"}


def app_server(
    workers: int,
    db_url: str,
    mail_env: dict[str, str],
    args: argparse.Namespace,
    log: Path,
    target: str = "app",
) -> Server:
    port = common.free_port()
    env = common.app_env(db_url, f"http://127.0.0.1:{port}", **LIMITS, **mail_env)
    for name in ("DB_POOL_SIZE", "DB_MAX_OVERFLOW", "CACHE_SECONDS"):
        value = getattr(args, name.lower(), None)
        if value is not None:
            env[name] = str(value)
    return Server(
        target,
        TARGETS[target],
        port,
        workers,
        env,
        not args.no_access_log,
        log,
        proxy_headers=getattr(args, "client_ips", 0) > 0,
    )


def storm(
    workers: int, db_url: str, args: argparse.Namespace, workdir: Path, target: str = "app"
) -> dict[str, Any]:
    tokens = workdir / f"tokens-{target}-{workers}.txt"
    tokens.write_text("")
    source, mail_env, source_log = start_token_source(args.mail, db_url, tokens, workdir)
    source_name = "smtp sink" if args.mail == "smtp" else "outbox feeder"
    app = app_server(
        workers, db_url, mail_env, args, workdir / f"storm-{target}-{workers}.log", target
    )
    before = common.letter_counts(db_url)
    pg_before = common.pg_started()
    try:
        with common.running(app):
            quiet = common.wait_quiet(args.quiet_wait)
            log(f"  {target}, workers={workers}: machine busy {quiet:.2f} cores before the run")
            load = run_load(
                app,
                source,
                source_name,
                db_url,
                args.database,
                tokens,
                mode="mixed",
                duration=args.duration,
                threads=args.threads,
                connections=args.connections,
                client_ips=args.client_ips,
            )
            time.sleep(2)  # let requests that were in flight when wrk stopped finish
        # The app has stopped (gracefully): nothing changes the counts any more.
    finally:
        common.stop_group(source)
    after = common.letter_counts(db_url)
    pg_restarted = common.pg_started() != pg_before
    result, extra = load.result, load.counts
    started, ended = load.started, load.ended
    verified_delta = after["verified_count"] - before["verified_count"]
    confirmed = extra.get("confirmed", 0)
    problems = common.exact(after)
    problems += common.ledger_problems(db_url)
    if not confirmed <= verified_delta <= confirmed + args.connections:
        problems.append(
            f"verified grew by {verified_delta}, but {confirmed} confirmations were answered 200 "
            f"(at most {args.connections} more may have been in flight when wrk stopped)"
        )
    # Links used during this run, and by how many distinct people (pending rows used since
    # the run began: the app's retention deletes expired links, so totals may shrink).
    used, used_distinct = links_used_since(db_url, started)
    if used != verified_delta:
        problems.append(f"{used} links used but {verified_delta} new verified signatures")
    if used_distinct != verified_delta:
        problems.append(f"{used_distinct} distinct confirmed signers but {verified_delta} new")
    if extra.get("failed", 0):
        problems.append(f"{extra['failed']} requests failed: {result.extra.get('fail_sample')}")
    if result.socket_errors:
        problems.append(f"{result.socket_errors} socket errors")
    cpu, cpu_cores, memory = load.cpu, load.cpu_cores, load.memory
    backend_cpu = cpu["postgresql backends of the bench database"]
    seconds = per_second(db_url, started, ended)
    source_cpu = cpu.get(source_name, 0.0)
    out = {
        "target": target,
        "workers": workers,
        "mail": args.mail,
        "busy_before": quiet,
        "pg_restarted": pg_restarted,
        "duration_s": result.duration,
        "requests": result.requests,
        "requests_per_s": result.rps,
        "sign_answered_202": extra.get("signed", 0),
        "confirm_answered_200": confirmed,
        "failed": extra.get("failed", 0),
        "signs_per_s": extra.get("signed", 0) / result.duration,
        "confirmed_per_s": confirmed / result.duration,
        "verified_delta": verified_delta,
        "per_second_min": min(seconds) if seconds else 0,
        "per_second_median": common.median([float(s) for s in seconds]),
        "per_second_max": max(seconds) if seconds else 0,
        "per_second": seconds,
        "latency_p50_ms": result.latency_p50_ms,
        "latency_p99_ms": result.latency_p99_ms,
        "before": before,
        "after": after,
        "exact": not problems,
        "problems": problems,
        "cpu_cores": cpu_cores,
        "app_cpu_ms_per_request": 1000 * cpu["app workers"] / max(result.requests, 1),
        "db_cpu_ms_per_request": 1000 * backend_cpu / max(result.requests, 1),
        # What one confirmed signature (its sign request, email and confirmation) cost.
        "app_cpu_ms_per_signature": 1000 * cpu["app workers"] / max(confirmed, 1),
        "db_cpu_ms_per_signature": 1000 * backend_cpu / max(confirmed, 1),
        "source_cpu_ms_per_signature": 1000 * source_cpu / max(confirmed, 1),
        "pg_waits": load.waits,
        "pg_wait_statements": load.wait_statements,
        "pg_sessions_opened": load.sessions,
        "memory": memory,
        "source_log": source_log.read_text().strip().splitlines()[-1:],
        "app_errors": [line for line in app.log().splitlines() if " ERROR " in line][:5],
    }
    log(
        f"  {target}, workers={workers}: {out['confirmed_per_s']:.0f} confirmed/s, "
        f"{out['signs_per_s']:.0f} signs/s, exact={out['exact']} {problems}"
    )
    return out


def report(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(
        f"\nsigning storm: {args.duration:.0f} s per run, wrk -t{args.threads} "
        f"-c{args.connections}, mail via {args.mail}, access log "
        f"{'off' if args.no_access_log else 'on'}, client addresses: "
        f"{args.client_ips or '127.0.0.1 only'}"
    )
    for r in results:
        print(f"\n{r['target']}, workers={r['workers']}, round {r.get('round', 1)}")
        print(
            f"  requests/s (sign + confirm): {r['requests_per_s']:.0f}  "
            f"p50 {r['latency_p50_ms']:.1f} ms  p99 {r['latency_p99_ms']:.1f} ms"
        )
        print(f"  sign requests answered 202:  {r['sign_answered_202']} ({r['signs_per_s']:.0f}/s)")
        print(
            f"  confirmations answered 200:  {r['confirm_answered_200']} "
            f"({r['confirmed_per_s']:.1f}/s)"
        )
        print(
            f"  verified per whole second (database): min {r['per_second_min']}, "
            f"median {r['per_second_median']:.0f}, max {r['per_second_max']}"
        )
        print(f"  failed answers: {r['failed']}")
        a = r["after"]
        print(
            f"  counts after: verified {a['verified_count']} = named {a['named_count']} + "
            f"hidden {a['hidden_count']}; organizations sum {a['organization_sum']}; "
            f"signature rows {a['signature_rows']} ({a['distinct_signers']} distinct); "
            f"used links {a['used_links']}; new verified {r['verified_delta']}; "
            f"ledger {a['ledger_length']} entries"
        )
        verdict = "yes" if r["exact"] else "NO: " + "; ".join(r["problems"])
        print(f"  exact (counts and ledger): {verdict}")
        if r.get("pg_restarted"):
            print("  PostgreSQL was restarted (by someone else) during this run: figures invalid")
        print(
            "  CPU (cores busy on average): "
            + ", ".join(f"{k} {v:.2f}" for k, v in r["cpu_cores"].items())
        )
        print(
            f"  CPU per request (sign or confirm): app {r['app_cpu_ms_per_request']:.1f} ms, "
            f"PostgreSQL backends {r['db_cpu_ms_per_request']:.1f} ms"
        )
        print(
            f"  CPU per confirmed signature: app {r['app_cpu_ms_per_signature']:.1f} ms, "
            f"PostgreSQL backends {r['db_cpu_ms_per_signature']:.1f} ms, "
            f"mail sink {r['source_cpu_ms_per_signature']:.1f} ms"
        )
        print(
            f"  PostgreSQL sessions opened during the run: {r['pg_sessions_opened']} "
            f"({r['pg_sessions_opened'] / max(r['duration_s'], 1):.1f}/s; the backend CPU "
            "above misses what a backend used after its last sighting, 50 ms apart)"
        )
        print(
            "  PostgreSQL backends by state (average): "
            + ", ".join(f"{k} {v:.1f}" for k, v in list(r["pg_waits"].items())[:8])
        )
        for statement, average in r["pg_wait_statements"].items():
            print(f"    {average:5.1f}  {statement}")
        peaks = ", ".join(common.fmt_mb(m.get("VmHWM")) for m in r["memory"])
        print(f"  peak RSS (VmHWM) per worker: {peaks}")
        if r["app_errors"]:
            print(f"  app logged errors: {r['app_errors']}")
    comparison(results)


def lock_waits(r: dict[str, Any]) -> float:
    """Backends waiting for a lock, on average over the run."""
    return sum(v for k, v in r["pg_waits"].items() if k.startswith("active Lock:"))


def comparison(results: list[dict[str, Any]]) -> None:
    """The app against the lean reference, round by round (each pair ran back to back)."""
    pairs: dict[tuple[int, int], dict[str, dict[str, Any]]] = {}
    for r in results:
        pairs.setdefault((r["workers"], r.get("round", 1)), {})[r["target"]] = r
    rows = [(key, pair) for key, pair in sorted(pairs.items()) if len(pair) == 2]
    if not rows:
        return
    print(
        f"\napp / lean reference, same command (target >= {TARGET_RATIO}):\n"
        "  workers round | confirmed/s app  ref  ratio | CPU ms per signature app+db: app  ref"
        " | lock waiters app ref | p99 ms app ref | exact"
    )
    ratios: dict[int, list[float]] = {}
    for (workers, number), pair in rows:
        app, ref = pair["app"], pair["reference"]
        ratio = app["confirmed_per_s"] / max(ref["confirmed_per_s"], 1e-9)
        ratios.setdefault(workers, []).append(ratio)

        def cost(r: dict[str, Any]) -> float:
            return float(r["app_cpu_ms_per_signature"] + r["db_cpu_ms_per_signature"])

        print(
            f"  {workers:7d} {number:5d} | {app['confirmed_per_s']:14.1f} "
            f"{ref['confirmed_per_s']:4.0f} {ratio:6.2f} | "
            f"{cost(app):37.1f} {cost(ref):4.1f} | {lock_waits(app):16.1f} "
            f"{lock_waits(ref):3.1f} | {app['latency_p99_ms']:10.0f} {ref['latency_p99_ms']:3.0f}"
            f" | {'yes' if app['exact'] and ref['exact'] else 'NO'}"
        )
    for workers, values in ratios.items():
        verdict = "met" if common.median(values) >= TARGET_RATIO else "NOT met"
        print(
            f"  workers={workers}: ratio median {common.median(values):.2f} "
            f"(min {min(values):.2f}, max {max(values):.2f}, {len(values)} rounds): {verdict}"
        )


def one_run(
    workers: int, target: str, name: str, args: argparse.Namespace, workdir: Path
) -> dict[str, Any]:
    """One storm of `target` on a fresh database (or the kept one), again if PostgreSQL
    was restarted under it."""
    if args.keep_db and common.database_exists(name):
        db_url = common.database_url(name)
    else:
        db_url = common.reset_database(name)
    for attempt in range(1, 4):
        outcome = storm(workers, db_url, args, workdir, target)
        if not outcome["pg_restarted"]:
            break
        # Someone restarted the shared cluster during the run (their fault tests do):
        # the figures measured that outage. Counts are still checked; run again.
        log(
            f"  PostgreSQL restarted during the run (exact={outcome['exact']}); "
            f"run again (attempt {attempt} of 3)"
        )
        time.sleep(5)
        if not args.keep_db:
            db_url = common.reset_database(name)
    outcome["attempts"] = attempt
    return outcome


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of storm per run")
    parser.add_argument("--workers", default="2", help="comma-separated worker counts")
    parser.add_argument("--mail", choices=("smtp", "outbox"), default="smtp")
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="runs of the app and of the lean reference per worker count, alternating",
    )
    parser.add_argument(
        "--no-reference", action="store_true", help="storm the app only (no lean reference)"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--no-access-log", action="store_true")
    parser.add_argument(
        "--client-ips",
        type=int,
        default=0,
        help="spread sign requests over this many client addresses "
        "(X-Forwarded-For, server started with proxy headers trusted from "
        "127.0.0.1); 0: all from 127.0.0.1",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=60.0,
        help="before each run, wait up to this long for the shared machine "
        "to be quiet (0: do not wait)",
    )
    parser.add_argument("--db-pool-size", type=int, default=None)
    parser.add_argument("--db-max-overflow", type=int, default=None)
    parser.add_argument("--cache-seconds", type=float, default=None)
    parser.add_argument("--database", default=common.DEFAULT_DB)
    parser.add_argument(
        "--keep-db",
        action="store_true",
        help="storm the database as it is (e.g. after bench.seed); by default "
        "each run starts from a fresh database with only the demo letter",
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    info = common.machine()
    common.print_machine(info)
    name = common.check_db_name(args.database)
    results = []
    targets = ["app"] if args.no_reference else ["app", "reference"]
    with tempfile.TemporaryDirectory(prefix="letters-storm-") as tmp:
        for workers in [int(w) for w in args.workers.split(",")]:
            for number in range(1, args.rounds + 1):
                # Alternate who goes first, so that neither always runs on a warmer machine.
                order = targets if number % 2 else targets[::-1]
                for target in order:
                    outcome = one_run(workers, target, name, args, Path(tmp))
                    outcome["round"] = number
                    results.append(outcome)
    report(results, args)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": info,
                    "args": vars(args) | {"json": str(args.json)},
                    "results": results,
                },
                indent=1,
                default=str,
            )
        )
    return results


if __name__ == "__main__":
    main()
