"""Does a manage or author sign-in request take longer for a signer (an author) than for a
stranger? Timed from outside, as an attacker would, with curl.

    python -m bench.oracle [--requests 200] [--workers 1] [--database NAME | --sqlite]

The app runs as in production (PostgreSQL, or SQLite with --sqlite; mail sent in the app
over SMTP to bench/sink.py, limits raised so that the run is not refused). One address
signs and confirms, one author account exists; then each kind of request is sent
`--requests` times for the known address and as often for a stranger at the same domain,
alternating, each with a new curl process and connection, each followed at once by the
same request for a third address (a probe: work a request leaves behind, such as an email
made right after the answer, slows it). The times curl reports are compared, of the
requests and of the probes after them: medians, and a Mann-Whitney U test (|z| < 2: no
difference this test can see).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench import common, storm
from bench.common import SLUG, log

SIGNER = "ada.lovelace@microsoft.com"
STRANGER = "grace.hopper@microsoft.com"
AUTHOR = "organizer@example.org"
NOBODY = "someone.else@example.org"
PROBE = "third.person@microsoft.com"  # signed nothing, is no author


def mann_whitney_z(first: list[float], second: list[float]) -> float:
    """z of the Mann-Whitney U statistic (normal approximation, ties averaged): how far
    apart the two samples' ranks are; positive when `first` tends to be larger."""
    pooled = sorted([(value, 0) for value in first] + [(value, 1) for value in second])
    ranks = [0.0] * len(pooled)
    start = 0
    while start < len(pooled):
        end = start
        while end + 1 < len(pooled) and pooled[end + 1][0] == pooled[start][0]:
            end += 1
        for index in range(start, end + 1):
            ranks[index] = (start + end) / 2 + 1
        start = end + 1
    n1, n2 = len(first), len(second)
    rank_sum = sum(rank for rank, (_, group) in zip(ranks, pooled, strict=True) if group == 0)
    u = rank_sum - n1 * (n1 + 1) / 2
    mean = n1 * n2 / 2
    spread = math.sqrt(n1 * n2 * (n1 + n2 + 1) / 12)
    return (u - mean) / spread


def curl_post(url: str, fields: dict[str, str]) -> tuple[int, float]:
    """One POST in a new curl process (so a new connection): status and curl's total time."""
    command = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{time_total}", "-X", "POST"]
    command += ["-H", "Sec-Fetch-Site: same-origin"]
    for name, value in fields.items():
        command += ["--data-urlencode", f"{name}={value}"]
    out = subprocess.run([*command, url], capture_output=True, text=True, timeout=30).stdout
    status, seconds = out.split()
    return int(status), float(seconds) * 1000


def post_json(url: str, body: dict[str, Any]) -> int:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return int(response.status)


def wait_token(tokens: Path, count: int) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        lines = [line for line in tokens.read_text().splitlines() if line.endswith(" END")]
        if len(lines) >= count:
            return lines[count - 1].split()[0]
        time.sleep(0.05)
    raise RuntimeError("no sign link reached the sink")


def compare(
    base: str, path: str, known: str, unknown: str, requests: int, warmup: int, probe: str
) -> dict[str, Any]:
    """Time each request, and a probe right after it (the same request for a third address):
    work left behind by the first (an email made after the answer) slows the probe."""
    times: dict[str, list[float]] = {known: [], unknown: []}
    probes: dict[str, list[float]] = {known: [], unknown: []}
    statuses: set[int] = set()
    for round_ in range(warmup + requests):
        # Alternate which goes first, so neither always follows the other's work.
        order = (known, unknown) if round_ % 2 == 0 else (unknown, known)
        for email in order:
            status, ms = curl_post(base + path, {"email": email})
            probe_status, probe_ms = curl_post(base + path, {"email": probe})
            statuses.update((status, probe_status))
            if round_ >= warmup:
                times[email].append(ms)
                probes[email].append(probe_ms)
    return {
        "path": path,
        "statuses": sorted(statuses),
        "known_median_ms": statistics.median(times[known]),
        "stranger_median_ms": statistics.median(times[unknown]),
        "z": mann_whitney_z(times[known], times[unknown]),
        "probe_after_known_median_ms": statistics.median(probes[known]),
        "probe_after_stranger_median_ms": statistics.median(probes[unknown]),
        "probe_z": mann_whitney_z(probes[known], probes[unknown]),
        "requests_each": requests,
    }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="timed requests per address")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--database", default="letters_bench_oracle")
    parser.add_argument("--sqlite", action="store_true", help="SQLite (a file here) instead")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    common.print_machine(common.machine())
    workdir = Path(tempfile.mkdtemp(prefix="letters-oracle-"))
    if args.sqlite:
        db_url = f"sqlite:///{workdir / 'letters.db'}"
        demo = str(common.run_root() / "letters/demo/microsoft-ice.md")
        for command in (["migrate"], ["import", demo]):
            subprocess.run(
                [common.PYTHON, "-m", "letters.cli", *command],
                env=common.app_env(db_url, "http://127.0.0.1:1"),
                cwd=common.run_root(),
                check=True,
                timeout=120,
                stdout=subprocess.DEVNULL,
            )
    else:
        db_url = common.reset_database(args.database)
    tokens = workdir / "tokens.txt"
    tokens.write_text("")
    source, mail_env, _ = storm.start_token_source("smtp", db_url, tokens, workdir)
    port = common.free_port()
    env = common.app_env(
        db_url,
        f"http://127.0.0.1:{port}",
        **mail_env,
        LIMIT_PER_ADDRESS="1000000",
        LIMIT_PER_IP="1000000",
        LIMIT_PER_DOMAIN="1000000",
    )
    app = common.Server(
        "app", "letters.app:create_app", port, args.workers, env, False, workdir / "app.log"
    )
    subprocess.run(
        [common.PYTHON, "-m", "letters.cli", "admin", "add", AUTHOR],
        env=env,
        cwd=common.run_root(),
        check=True,
        timeout=60,
        stdout=subprocess.DEVNULL,
    )
    results = []
    try:
        with common.running(app):
            base = app.url
            sign = {"email": SIGNER, "name": "", "title": "", "show_name": False}
            assert post_json(f"{base}/api/letters/{SLUG}/signatures", sign) == 202
            assert post_json(f"{base}/api/verify", {"token": wait_token(tokens, 1)}) == 200
            log(f"signed as one address; {args.requests} timed requests per address and kind")
            for path, known, unknown, probe in [
                (f"/letters/{SLUG}/manage", SIGNER, STRANGER, PROBE),
                ("/authors/sign-in", AUTHOR, NOBODY, PROBE),
            ]:
                result = compare(base, path, known, unknown, args.requests, args.warmup, probe)
                results.append(result)
                log(
                    f"  POST {path}: known {result['known_median_ms']:.2f} ms, stranger "
                    f"{result['stranger_median_ms']:.2f} ms (medians), z = {result['z']:+.2f}; "
                    f"the next request after them {result['probe_after_known_median_ms']:.2f} "
                    f"vs {result['probe_after_stranger_median_ms']:.2f} ms, "
                    f"z = {result['probe_z']:+.2f}; answers {result['statuses']}"
                )
            time.sleep(3)  # the last beat of the job runner
    finally:
        common.stop_group(source)
    sink = (workdir / "smtp.log").read_text().strip().splitlines()[-1]
    log(f"  {sink} (1 sign link, then one email per request for the signer and the author)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
