"""Read throughput: the API tally, the letter page and the badge against a bare endpoint.

    python -m bench.read [--workers 1,2] [--duration 10] [--rounds 3] [--no-access-log]

Starts, on loopback, the bare Starlette app (bench/bare_app.py) exactly as
`uvicorn bench.bare_app:app` runs it (uvicorn's defaults: its own log config and access
log, uvloop + httptools) and the letters app on the bench database as `letters serve` runs
it (bench/serve.py: its log config, whose access log redacts tokens on the routes that carry
them); the same number of workers, access log on for both unless --no-access-log. For
each worker count it runs wrk against every target in turn, the order rotated each round,
and reports the median requests/s per target and its ratio to the bare endpoint's median
from the same run. Also prints the server CPU time per request and the peak RSS (VmHWM)
of every worker process.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench import common
from bench.common import SLUG, Server, log, median

TARGETS = {
    "bare": ("bare", "/", []),
    "api": ("app", f"/api/letters/{SLUG}", []),
    # The letter page at its English address: the same bytes for every reader (the shared
    # address /letters/{slug} only redirects there).
    "html": ("app", f"/en/letters/{SLUG}", []),
    "badge": ("app", f"/letters/{SLUG}/badge.svg", []),
}
# The floor to reach against the bare endpoint, by requests/s and by CPU per request
# (bare's CPU per request over the target's): access logs on for both, and off for both.
GOALS = {True: {"api": 0.9, "html": 0.7}, False: {"api": 0.8, "html": 0.6}}
# A run with errors (or during which someone restarted the shared PostgreSQL) is run again.
MAX_ATTEMPTS = 3


def check_answers(servers: dict[str, Server], targets: list[str]) -> None:
    """Each target must answer 200 before it is measured (a fast 404 would be no figure)."""
    for name in targets:
        which, path, headers = TARGETS[name]
        request = urllib.request.Request(servers[which].url + path)
        for header in headers:
            key, value = header.split(": ", 1)
            request.add_header(key, value)
        with urllib.request.urlopen(request, timeout=10) as response:
            if response.status != 200:
                raise RuntimeError(f"{name}: status {response.status}")


def measure(
    workers: int,
    db_url: str,
    args: argparse.Namespace,
    targets: list[str],
    workdir: Path,
) -> dict[str, Any]:
    access = not args.no_access_log
    bare_port, app_port = common.free_port(), common.free_port()
    bare = Server(
        "bare",
        "bench.bare_app:app",
        bare_port,
        workers,
        common.app_env(db_url, f"http://127.0.0.1:{bare_port}"),
        access,
        workdir / f"bare-{workers}.log",
        plain=True,
    )
    app_env = common.app_env(db_url, f"http://127.0.0.1:{app_port}")
    if args.cache_seconds is not None:
        app_env["CACHE_SECONDS"] = str(args.cache_seconds)
    app = Server(
        "app",
        "letters.app:create_app",
        app_port,
        workers,
        app_env,
        access,
        workdir / f"app-{workers}.log",
    )
    servers = {"bare": bare, "app": app}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in targets}
    with common.running(bare, app):
        check_answers(servers, targets)
        for name in targets:  # warm-up: pools, caches, first renders
            which, path, headers = TARGETS[name]
            common.run_wrk(
                servers[which].url + path,
                args.warmup,
                args.threads,
                args.connections,
                headers=headers,
            )
        for round_no in range(args.rounds):
            quiet = common.wait_quiet(args.quiet_wait)
            log(f"  round {round_no + 1}: machine busy {quiet:.2f} cores before it")
            order = targets[round_no % len(targets) :] + targets[: round_no % len(targets)]
            for name in order:
                which, path, headers = TARGETS[name]
                server = servers[which]
                best = None
                for attempt in range(1, MAX_ATTEMPTS + 1):
                    common.wait_quiet(args.quiet_wait)
                    pg_before = common.pg_started()
                    cpu_before, system_before = server.cpu(), common.system_busy()[0]
                    result = common.run_wrk(
                        server.url + path,
                        args.duration,
                        args.threads,
                        args.connections,
                        headers=headers,
                    )
                    cpu_used = server.cpu() - cpu_before
                    system_used = common.system_busy()[0] - system_before
                    restarted = common.pg_started() != pg_before
                    other = (system_used - cpu_used - result.cpu) / result.duration
                    failed = bool(result.non_2xx or result.socket_errors or restarted)
                    if not failed and (best is None or other < best[3]):
                        best = (result, cpu_used, system_used, other)
                    if not failed and other <= args.max_other:
                        break
                    log(
                        f"  {name}: {result.non_2xx} non-2xx, {result.socket_errors} socket "
                        f"errors, PostgreSQL restarted: {restarted}, other processes "
                        f"{other:.2f} cores; run again (attempt {attempt} of {MAX_ATTEMPTS})"
                    )
                    if restarted:
                        time.sleep(5)
                if best is None:
                    raise RuntimeError(f"{name}: no run without errors in {MAX_ATTEMPTS} tries")
                # The run least disturbed by other work on the machine.
                result, cpu_used, system_used, _ = best
                run = {
                    "round": round_no + 1,
                    "attempts": attempt,
                    "rps": result.rps,
                    "requests": result.requests,
                    "p50_ms": result.latency_p50_ms,
                    "p99_ms": result.latency_p99_ms,
                    "non_2xx": result.non_2xx,
                    "socket_errors": result.socket_errors,
                    "server_cpu_s": cpu_used,
                    "server_cpu_us_per_req": 1e6 * cpu_used / max(result.requests, 1),
                    "wrk_cpu_s": result.cpu,
                    "server_cores": cpu_used / result.duration,
                    "wrk_cores": result.cpu / result.duration,
                    # Everything else that ran meanwhile (other tenants, PostgreSQL, the kernel).
                    "other_cores": (system_used - cpu_used - result.cpu) / result.duration,
                }
                runs[name].append(run)
                log(
                    f"  workers={workers} round {round_no + 1} {name:12} {result.rps:9.0f} req/s"
                    f"  p99 {result.latency_p99_ms:.1f} ms  non-2xx {result.non_2xx}"
                    f"  errors {result.socket_errors}"
                    f"  server CPU {run['server_cpu_us_per_req']:.0f} us/req"
                    f"  cores: server {run['server_cores']:.2f} wrk {run['wrk_cores']:.2f}"
                    f" other {run['other_cores']:.2f}"
                )
        memory = {"bare": bare.memory(), "app": app.memory()}
    bare_median = median([r["rps"] for r in runs["bare"]])
    bare_cpu = median([r["server_cpu_us_per_req"] for r in runs["bare"]])
    summary = {}
    for name in targets:
        med = median([r["rps"] for r in runs[name]])
        cpu = median([r["server_cpu_us_per_req"] for r in runs[name]])
        summary[name] = {
            "median_rps": med,
            "ratio": med / bare_median,
            "cpu_ratio": bare_cpu / cpu,
            "per_round_rps": [round(r["rps"]) for r in runs[name]],
            "median_p99_ms": median([r["p99_ms"] for r in runs[name]]),
            "median_cpu_us_per_req": cpu,
            "non_2xx": sum(r["non_2xx"] for r in runs[name]),
            "socket_errors": sum(r["socket_errors"] for r in runs[name]),
            "median_other_cores": median([r["other_cores"] for r in runs[name]]),
        }
    return {"workers": workers, "summary": summary, "runs": runs, "memory": memory}


def report(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(
        f"\nread throughput: wrk -t{args.threads} -c{args.connections} -d{args.duration}s, "
        f"{args.rounds} rounds interleaved, access log {'off' if args.no_access_log else 'on'}"
        " for both servers"
    )
    for result in results:
        print(f"\nworkers={result['workers']}")
        print(
            f"  {'target':12} {'median req/s':>12} {'ratio':>6} {'CPU us/req':>10} "
            f"{'ratio':>6} {'goal':>5}  {'per round':24} {'p99 ms':>7} {'other':>5}  errors"
        )
        goals = GOALS[not args.no_access_log]
        for name, s in result["summary"].items():
            goal = goals.get(name)
            met = goal is not None and min(s["ratio"], s["cpu_ratio"]) >= goal
            verdict = "" if goal is None else ("met" if met else "NOT met")
            goal_text = "" if goal is None else f">={goal}"
            print(
                f"  {name:12} {s['median_rps']:12.0f} {s['ratio']:6.2f} "
                f"{s['median_cpu_us_per_req']:10.0f} {s['cpu_ratio']:6.2f} {goal_text:>5}  "
                f"{' '.join(str(x) for x in s['per_round_rps']):24} {s['median_p99_ms']:7.1f} "
                f"{s['median_other_cores']:5.2f}  {s['non_2xx'] + s['socket_errors']} {verdict}"
            )
        print("  ratio: of requests/s to bare's; CPU ratio: bare's CPU per request to the target's")
        for which, workers in result["memory"].items():
            peaks = ", ".join(common.fmt_mb(w.get("VmHWM")) for w in workers)
            print(f"  peak RSS (VmHWM) per {which} worker: {peaks}")


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", default="1", help="comma-separated worker counts")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per target")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--no-access-log", action="store_true")
    parser.add_argument(
        "--max-other",
        type=float,
        default=0.3,
        help="run again (up to 3 tries, keeping the least disturbed) when other "
        "processes kept more than this many cores busy during a run",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=20.0,
        help="before each round, wait up to this long for the shared machine "
        "to be quiet (0: do not wait)",
    )
    parser.add_argument(
        "--cache-seconds",
        type=float,
        default=None,
        help="CACHE_SECONDS for the app (default: the app's default)",
    )
    parser.add_argument("--database", default=common.DEFAULT_DB)
    parser.add_argument(
        "--keep-db",
        action="store_true",
        help="use the database as it is (e.g. after bench.seed) instead of "
        "recreating it with only the demo letter",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    targets = [t for t in args.targets.split(",") if t]
    if "bare" not in targets:
        targets.insert(0, "bare")
    info = common.machine()
    common.print_machine(info)
    name = common.check_db_name(args.database)
    if args.keep_db and common.database_exists(name):
        db_url = common.database_url(name)
    else:
        db_url = common.reset_database(name)
    print(f"database: {name}, before: {common.letter_counts(db_url)['verified_count']} verified")
    results = []
    with tempfile.TemporaryDirectory(prefix="letters-bench-") as tmp:
        for workers in [int(w) for w in args.workers.split(",")]:
            results.append(measure(workers, db_url, args, targets, Path(tmp)))
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
