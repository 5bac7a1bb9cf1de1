"""Latency at a steady offered load: signatures started at a fixed rate, not as fast as possible.

    python -m bench.steady [--rate 60] [--duration 60] [--workers 2] [--targets app,reference]

Where bench/storm.py finds the most the app can confirm (closed loop: each connection sends
its next request when the last one is answered, so a slow server slows the load down),
this offers a fixed load (open loop) and measures how long each request waits: a sign
request is sent every 1/RATE seconds whatever happened to the ones before, with the
email sent over SMTP by the app to bench/sink.py as in the storm, and each link is
confirmed as soon as its email reaches the sink. A sign request's latency runs from the
moment it was due (so a backlog in the load generator counts against the server, not for
it), a confirmation's from the moment its link arrived; both until the answer's last byte.

The client is plain asyncio on keep-alive HTTP/1.1 connections (a new one whenever all are
busy). After each run the counts and the ledger are checked as in the storm, and the
PostgreSQL backends waiting for a lock are sampled as there.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import common, storm
from bench.common import SLUG, log

# uvicorn closes a keep-alive connection idle for 5 s (its timeout_keep_alive); a client
# must not send on one idle that long, or the request meets a closed socket. Both servers
# measured here run with uvicorn's default.
KEEP_ALIVE_EXPIRY = 4.0


class Client:
    """Keep-alive HTTP/1.1 connections to one server; JSON POSTs. Like any HTTP client with
    a pool (httpx's keepalive_expiry), it drops an idle connection before the server would
    close it."""

    def __init__(self, port: int) -> None:
        self.port = port
        # (reader, writer, when it became idle)
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []
        self.opened = 0

    def _reuse(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        while self.idle:
            reader, writer, since = self.idle.pop()
            if time.monotonic() - since < KEEP_ALIVE_EXPIRY:
                return reader, writer
            writer.close()
        return None

    async def post(self, path: str, body: dict[str, Any]) -> tuple[int, bytes]:
        reused = self._reuse()
        if reused is not None:
            reader, writer = reused
        else:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            self.opened += 1
        data = json.dumps(body).encode()
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n".encode()
            + data
        )
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        length = 0
        for line in lines[1:]:
            if line.lower().startswith("content-length:"):
                length = int(line.split(":", 1)[1])
        payload = await reader.readexactly(length)
        self.idle.append((reader, writer, time.monotonic()))
        return status, payload


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def offer(
    port: int, tokens: Path, rate: float, duration: float, run_id: str
) -> dict[str, Any]:
    client = Client(port)
    sign_ms: list[float] = []
    confirm_ms: list[float] = []
    failures: list[str] = []
    pending: set[asyncio.Task[None]] = set()
    domains = ("microsoft.com", "github.com", "linkedin.com", "microsoft.com")

    async def sign(n: int, due: float) -> None:
        body = {
            "email": f"s{run_id}-{n}@{domains[n % 4]}",
            "name": f"Signer {n}",
            "title": "Engineer",
            "show_name": n % 3 == 0,
        }
        try:
            status, payload = await client.post(f"/api/letters/{SLUG}/signatures", body)
        except (OSError, asyncio.IncompleteReadError) as error:
            failures.append(f"sign: {type(error).__name__}")
            return
        sign_ms.append(1000 * (time.monotonic() - due))
        if status != 202:
            failures.append(f"sign {status} {payload[:100]!r}")

    async def confirm(token: str, arrived: float) -> None:
        try:
            status, payload = await client.post("/api/verify", {"token": token})
        except (OSError, asyncio.IncompleteReadError) as error:
            failures.append(f"confirm: {type(error).__name__}")
            return
        confirm_ms.append(1000 * (time.monotonic() - arrived))
        if status != 200 or b'"verified"' not in payload:
            failures.append(f"confirm {status} {payload[:100]!r}")

    def spawn(coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        pending.add(task)
        task.add_done_callback(pending.discard)

    async def links() -> None:
        seen = 0
        with tokens.open("rb") as lines:
            while True:
                for line in lines.readlines():
                    if line.endswith(b" END\n"):
                        seen += 1
                        spawn(confirm(line[:-5].decode(), time.monotonic()))
                await asyncio.sleep(0.005)

    reader = asyncio.ensure_future(links())
    start = time.monotonic()
    total = int(rate * duration)
    for n in range(total):
        due = start + n / rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        spawn(sign(n, due))
    # Let the last links arrive and be confirmed (bounded).
    deadline = time.monotonic() + 30
    while (len(confirm_ms) + len(failures) < total) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    reader.cancel()
    if pending:
        await asyncio.wait(pending, timeout=10)
    return {
        "offered_per_s": rate,
        "signs": len(sign_ms),
        "confirms": len(confirm_ms),
        "failures": len(failures),
        "failure_sample": failures[:5],
        "sign_p50_ms": percentile(sign_ms, 0.5),
        "sign_p99_ms": percentile(sign_ms, 0.99),
        "sign_max_ms": max(sign_ms, default=float("nan")),
        "confirm_p50_ms": percentile(confirm_ms, 0.5),
        "confirm_p99_ms": percentile(confirm_ms, 0.99),
        "confirm_max_ms": max(confirm_ms, default=float("nan")),
        "connections_opened": client.opened,
    }


def one_run(target: str, workers: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    db_url = common.reset_database(args.database)
    tokens = workdir / f"tokens-{target}.txt"
    tokens.write_text("")
    source, mail_env, _ = storm.start_token_source("smtp", db_url, tokens, workdir)
    app = storm.app_server(
        workers, db_url, mail_env, args, workdir / f"steady-{target}.log", target
    )
    sampler = storm.WaitSampler(db_url, args.database)
    try:
        with common.running(app):
            quiet = common.wait_quiet(args.quiet_wait)
            cpu0 = (app.cpu(), common.system_busy()[0])
            backends = common.BackendCPU(args.database)
            backends.start()
            sampler.start()
            started = time.monotonic()
            outcome = asyncio.run(
                offer(app.port, tokens, args.rate, args.duration, f"{time.time_ns() % 10**9}")
            )
            wall = time.monotonic() - started
            sampler.stop.set()
            db_cpu = backends.stop()
            cpu1 = (app.cpu(), common.system_busy()[0])
            memory = app.memory()
            time.sleep(1)
    finally:
        sampler.stop.set()
        common.stop_group(source)
    after = common.letter_counts(db_url)
    problems = common.exact(after) + common.ledger_problems(db_url)
    confirmed = max(outcome["confirms"], 1)
    waits = sampler.averages()
    outcome.update(
        target=target,
        workers=workers,
        busy_before=quiet,
        exact=not problems,
        problems=problems,
        verified=after["verified_count"],
        app_cpu_ms_per_signature=1000 * (cpu1[0] - cpu0[0]) / confirmed,
        db_cpu_ms_per_signature=1000 * db_cpu / confirmed,
        machine_busy_cores=(cpu1[1] - cpu0[1]) / wall,
        lock_waiters=sum(v for k, v in waits.items() if k.startswith("active Lock:")),
        pg_waits=dict(list(waits.items())[:6]),
        pg_sessions_opened=backends.sessions,
        memory=[common.fmt_mb(m.get("VmHWM")) for m in memory],
        finished=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    log(
        f"  {target}: sign p99 {outcome['sign_p99_ms']:.0f} ms, confirm p99 "
        f"{outcome['confirm_p99_ms']:.0f} ms, {outcome['failures']} failures "
        f"{outcome['failure_sample']}, exact={not problems}"
    )
    return outcome


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=60.0, help="signatures offered per second")
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--targets", default="app,reference")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--quiet-wait", type=float, default=60.0)
    parser.add_argument("--database", default=common.DEFAULT_DB)
    parser.add_argument("--no-access-log", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    args.client_ips = 0
    info = common.machine()
    common.print_machine(info)
    common.check_db_name(args.database)
    targets = args.targets.split(",")
    results = []
    with tempfile.TemporaryDirectory(prefix="letters-steady-") as tmp:
        for number in range(1, args.rounds + 1):
            for target in targets if number % 2 else targets[::-1]:
                result = one_run(target, args.workers, args, Path(tmp))
                result["round"] = number
                results.append(result)
    print(
        f"\nsteady load: {args.rate:.0f} signatures/s offered for {args.duration:.0f} s "
        f"(a sign request every {1000 / args.rate:.1f} ms, each link confirmed on arrival), "
        f"{args.workers} workers, mail over SMTP"
    )
    print(
        "  target     round | sign p50 / p99 / max ms | confirm p50 / p99 / max ms | failed "
        "| lock waiters | CPU ms/signature app, db | machine busy | exact"
    )
    for r in results:
        print(
            f"  {r['target']:10} {r['round']:5} | {r['sign_p50_ms']:6.0f} {r['sign_p99_ms']:6.0f} "
            f"{r['sign_max_ms']:6.0f}    | {r['confirm_p50_ms']:6.0f} {r['confirm_p99_ms']:6.0f} "
            f"{r['confirm_max_ms']:6.0f}       | {r['failures']:6} | {r['lock_waiters']:12.2f} | "
            f"{r['app_cpu_ms_per_signature']:8.1f} {r['db_cpu_ms_per_signature']:5.1f}     | "
            f"{r['machine_busy_cores']:12.2f} | {'yes' if r['exact'] else r['problems']}"
        )
        print(
            f"      backends: {r['pg_waits']}; PostgreSQL sessions opened "
            f"{r['pg_sessions_opened']}; peak RSS per worker {r['memory']}"
        )
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "results": results}, indent=1))
    return results


if __name__ == "__main__":
    main()
