"""What every benchmark shares: the database, the servers, wrk, and /proc readings.

Everything runs on loopback. Every server, sink and wrk started here runs in its own
process group and is stopped (SIGTERM, then SIGKILL of the group) when its `with` block
ends, whatever happens inside it. Every wait is bounded.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import hashlib
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
PYTHON = sys.executable
WRK = os.environ.get("WRK", "/usr/bin/wrk")
PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
DEFAULT_DB = "letters_bench"
SLUG = "microsoft-end-ice-contract"  # the demo letter (letters/demo/microsoft-ice.md)
# A fixed production-grade secret for the bench database only (64 characters).
SECRET = "bench-secret-0123456789abcdef0123456789abcdef0123456789abcdef0123"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


_RUN_ROOT: Path | None = None
SOURCE_PARTS = ("letters", "templates", "static", "migrations", "bench")


def run_root() -> Path:
    """A private copy of the app (and of bench/) taken once per bench command.

    Every server, migration and helper this command starts runs from it, so that edits
    made to the working tree while a benchmark runs cannot mix two versions of the app
    (new code against an older schema, say) within one set of figures."""
    global _RUN_ROOT
    if _RUN_ROOT is None:
        root = Path(tempfile.mkdtemp(prefix="letters-bench-src-"))
        ref = os.environ.get("LETTERS_BENCH_REF")
        if ref:
            # A committed version (e.g. HEAD), whatever the working tree holds meanwhile.
            archive = subprocess.run(
                ["git", "archive", ref, *SOURCE_PARTS, "alembic.ini"],
                cwd=ROOT,
                check=True,
                capture_output=True,
            ).stdout
            subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True)
        else:
            skip = shutil.ignore_patterns("__pycache__", "results", "*.pyc")
            for name in SOURCE_PARTS:
                shutil.copytree(ROOT / name, root / name, ignore=skip)
            shutil.copy2(ROOT / "alembic.ini", root / "alembic.ini")
        atexit.register(shutil.rmtree, root, True)
        _RUN_ROOT = root
    return _RUN_ROOT


def source_fingerprint() -> str:
    """A short hash of the app's source, templates and migrations as benchmarked."""
    digest = hashlib.sha256()
    root = run_root()
    for name in ("letters", "templates", "migrations"):
        for path in sorted((root / name).rglob("*")):
            if path.is_file() and path.suffix in (".py", ".html", ".txt", ".md", ".css"):
                digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- machine


def machine() -> dict[str, str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        pg = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        sync = conn.execute("SHOW synchronous_commit").fetchone()[0]  # type: ignore[index]
    wrk = subprocess.run([WRK, "-v"], capture_output=True, text=True, check=False)
    versions = {}
    for module in ("uvicorn", "starlette", "sqlalchemy", "psycopg", "uvloop", "httptools"):
        with contextlib.suppress(Exception):
            versions[module] = __import__(module).__version__
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "memory": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "python": platform.python_version(),
        "postgresql": f"{pg} (synchronous_commit={sync})",
        "wrk": (wrk.stdout + wrk.stderr).split("\n")[0].strip(),
        "packages": ", ".join(f"{k} {v}" for k, v in versions.items()),
        "loadavg": Path("/proc/loadavg").read_text().split(" ")[0],
        "app source": f"sha256 {source_fingerprint()} of letters/, templates/, migrations/ "
        "(copied at the start of this command)",
    }


def print_machine(info: dict[str, str]) -> None:
    print("machine:")
    for key, value in info.items():
        print(f"  {key}: {value}")


# ---------------------------------------------------------------- database


def database_url(name: str) -> str:
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    return f"{base}/{name}"


def check_db_name(name: str) -> str:
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise SystemExit(f"bad database name {name!r}")
    return name


def reset_database(name: str) -> str:
    """Drop and create `name`, migrate it and load the demo letter. Returns its URL."""
    check_db_name(name)
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = database_url(name)
    env = app_env(url, "http://127.0.0.1:1")
    for command in (["migrate"], ["import", str(run_root() / "letters/demo/microsoft-ice.md")]):
        subprocess.run(
            [PYTHON, "-m", "letters.cli", *command],
            env=env,
            cwd=run_root(),
            check=True,
            timeout=120,
            stdout=subprocess.DEVNULL,
        )
    return url


def database_exists(name: str) -> bool:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return row is not None


def letter_counts(url: str, slug: str = SLUG) -> dict[str, Any]:
    """Everything the exactness checks compare, read in one transaction."""
    with psycopg.connect(url) as conn:
        letter_id, verified, named, hidden = conn.execute(
            "SELECT id, verified_count, named_count, hidden_count FROM letter WHERE slug = %s",
            (slug,),
        ).fetchone()  # type: ignore[misc]
        q = conn.execute
        org_sum = q(
            "SELECT coalesce(sum(count), 0) FROM organization_count WHERE letter_id = %s",
            (letter_id,),
        ).fetchone()[0]  # type: ignore[index]
        rows, distinct_rows, shown = q(
            "SELECT count(*), count(DISTINCT email_hash), count(*) FILTER (WHERE show_name) "
            "FROM signature WHERE letter_id = %s",
            (letter_id,),
        ).fetchone()  # type: ignore[misc]
        orgs_match = q(
            "SELECT count(*) FROM (SELECT organization, count(*) AS n FROM signature "
            "WHERE letter_id = %(id)s GROUP BY organization) s FULL JOIN "
            "(SELECT organization, count FROM organization_count WHERE letter_id = %(id)s "
            "AND count > 0) o USING (organization) WHERE s.n IS DISTINCT FROM o.count",
            {"id": letter_id},
        ).fetchone()[0]  # type: ignore[index]
        used, used_distinct = q(
            "SELECT count(*), count(DISTINCT email_hash) FROM pending_signature "
            "WHERE letter_id = %s AND used_at IS NOT NULL",
            (letter_id,),
        ).fetchone()  # type: ignore[misc]
        pending = q(
            "SELECT count(*) FROM pending_signature WHERE letter_id = %s", (letter_id,)
        ).fetchone()[0]  # type: ignore[index]
        outbox = q("SELECT count(*) FROM outbox_message").fetchone()[0]  # type: ignore[index]
        ledger_length, ledger_rows, ledger_net = q(
            "SELECT l.ledger_length, count(e.id), coalesce(sum(CASE e.kind WHEN 'signed' "
            "THEN 1 WHEN 'changed' THEN 0 ELSE -1 END), 0) FROM letter l LEFT JOIN "
            "ledger_entry e ON e.letter_id = l.id WHERE l.id = %s GROUP BY l.ledger_length",
            (letter_id,),
        ).fetchone()  # type: ignore[misc]
        daily_sum = daily_mismatches = None
        if q("SELECT to_regclass('daily_count')").fetchone()[0] is not None:  # type: ignore[index]
            # Newer schemas also count per UTC day and organization.
            daily_sum = int(
                q(
                    "SELECT coalesce(sum(count), 0) FROM daily_count WHERE letter_id = %s",
                    (letter_id,),
                ).fetchone()[0]  # type: ignore[index]
            )
            daily_mismatches = q(
                "SELECT count(*) FROM (SELECT to_char(verified_at AT TIME ZONE 'UTC', "
                "'YYYY-MM-DD') AS day, organization, count(*) AS n FROM signature "
                "WHERE letter_id = %(id)s GROUP BY 1, 2) s FULL JOIN (SELECT day, organization, "
                "count FROM daily_count WHERE letter_id = %(id)s AND count > 0) d "
                "USING (day, organization) WHERE s.n IS DISTINCT FROM d.count",
                {"id": letter_id},
            ).fetchone()[0]  # type: ignore[index]
    return {
        "verified_count": verified,
        "named_count": named,
        "hidden_count": hidden,
        "organization_sum": int(org_sum),
        "signature_rows": rows,
        "distinct_signers": distinct_rows,
        "shown_rows": shown,
        "organization_mismatches": orgs_match,
        "used_links": used,
        "distinct_confirmed_links": used_distinct,
        "pending_rows": pending,
        "outbox_rows": outbox,
        "ledger_length": ledger_length,
        "ledger_rows": ledger_rows,
        "ledger_net": int(ledger_net),
        "daily_sum": daily_sum,
        "daily_mismatches": daily_mismatches,
    }


def ledger_problems(url: str, slug: str = SLUG) -> list[str]:
    """Verify the letter's ledger as `letters verify-ledger` does (chain, order, hashes,
    recount) and compare its recount with the counters; returns what is wrong."""
    from letters.record import ledger

    with psycopg.connect(url) as conn:
        letter_id, verified, named, length, head = conn.execute(
            "SELECT id, verified_count, named_count, ledger_length, ledger_head FROM letter "
            "WHERE slug = %s",
            (slug,),
        ).fetchone()  # type: ignore[misc]
        cursor = conn.execute(
            "SELECT seq, kind, day, organization, named, name, title, name_salt, name_digest, "
            "commitment, prev_hash, entry_hash FROM ledger_entry WHERE letter_id = %s "
            "ORDER BY seq",
            (letter_id,),
        )
        keys = ("seq", "kind", "day", "organization", "named", "name", "title", "name_salt")
        keys += ("name_digest", "commitment", "prev", "hash")
        entries = (dict(zip(keys, row, strict=True)) for row in cursor)
        try:
            recount = ledger.verify(entries)
        except ledger.LedgerError as error:
            return [f"ledger: {error}"]
    problems = []
    if (recount.length, recount.head) != (length, head):
        problems.append(f"ledger: {recount.length} entries, but the letter names {length}")
    if (recount.verified, recount.named) != (verified, named):
        problems.append(
            f"ledger recounts {recount.verified} ({recount.named} named), "
            f"counters say {verified} ({named})"
        )
    return problems


def used_links(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pending_signature WHERE used_at IS NOT NULL")
        return int(row.fetchone()[0])  # type: ignore[index]


def exact(counts: dict[str, Any]) -> list[str]:
    """The invariants that must hold after any storm; returns what is wrong (empty: exact)."""
    v = counts["verified_count"]
    problems = []
    checks = {
        "named+hidden == verified": counts["named_count"] + counts["hidden_count"] == v,
        "sum(organization counts) == verified": counts["organization_sum"] == v,
        "rows in signature == verified": counts["signature_rows"] == v,
        "distinct signers in signature == verified": counts["distinct_signers"] == v,
        "named_count == rows with show_name": counts["shown_rows"] == counts["named_count"],
        "each organization count == its rows": counts["organization_mismatches"] == 0,
        "ledger entries == ledger length": counts["ledger_rows"] == counts["ledger_length"],
        "ledger recount == verified": counts["ledger_net"] == v,
    }
    if counts.get("daily_sum") is not None:
        checks["sum(daily counts) == verified"] = counts["daily_sum"] == v
        checks["each daily count == its rows"] = counts["daily_mismatches"] == 0
    for name, ok in checks.items():
        if not ok:
            problems.append(name)
    return problems


# ---------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def app_env(db_url: str, base_url: str, **extra: str) -> dict[str, str]:
    """The app's settings for a bench run: production mode, PostgreSQL, loopback only."""
    drop = {
        "DATABASE_URL",
        "SECRET_KEY",
        "BASE_URL",
        "SMTP_URL",
        "ENVIRONMENT",
        "MAIL_IN_APP",
        "CACHE_SECONDS",
        "LIMIT_PER_IP",
        "LIMIT_PER_DOMAIN",
        "LIMIT_PER_ADDRESS",
        "DB_POOL_SIZE",
        "DB_MAX_OVERFLOW",
    }
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(
        {
            "DATABASE_URL": db_url,
            "SECRET_KEY": SECRET,
            "ENVIRONMENT": "production",
            "BASE_URL": base_url,
            # Production requires one; nothing listens here, and only the storm sends mail
            # (it points SMTP_URL at its own sink).
            "SMTP_URL": "smtp://127.0.0.1:9?starttls=off",
            "INSTANCE_PATH": str(Path(tempfile.gettempdir()) / "letters-bench-instance"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


def cpu_seconds(pid: int) -> float:
    """utime+stime of a live process, in seconds (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def precise_cpu_seconds(pid: int) -> float:
    """Time a live process has run on a CPU, in seconds, to the nanosecond (its scheduler
    statistics; 0 if it is gone). utime+stime come in 10 ms ticks, scaled from this: a
    backend that ran 3 ms shows none."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0


def reaped_children_cpu(pid: int) -> float:
    """cutime+cstime: CPU of the children this process has waited for."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[13]) + int(fields[14])) / CLK_TCK


def memory_kb(pid: int) -> dict[str, int]:
    out = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmHWM:", "VmRSS:")):
                out[line.split(":")[0]] = int(line.split()[1])
    return out


def children(pid: int) -> list[int]:
    kids: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                kids += [int(x) for x in (task / "children").read_text().split()]
    return kids


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def postgres_cpu() -> float:
    """CPU seconds used so far by the PostgreSQL cluster: its live processes plus the
    backends the postmaster has already reaped. Includes every client of the cluster."""
    total = 0.0
    postmaster = None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        line = cmdline(int(proc.name))
        if "postgres" not in line:
            continue
        pid = int(proc.name)
        if "/bin/postgres" in line:
            postmaster = pid
        try:
            if proc.stat().st_uid == 0:
                continue
        except OSError:
            continue
        total += cpu_seconds(pid)
    if postmaster is not None:
        total += reaped_children_cpu(postmaster)
    return total


def pg_started() -> str:
    """When the PostgreSQL server last started. The cluster is shared, and other people's
    fault tests restart it: a run during which this changed measured an outage, not us."""
    try:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=10) as conn:
            return str(conn.execute("SELECT pg_postmaster_start_time()").fetchone()[0])  # type: ignore[index]
    except psycopg.OperationalError:
        return "down"


def transactions(database: str) -> int:
    """Committed plus rolled-back transactions of a database so far (pg_stat_database;
    a backend reports its counts when it exits, or within about a second of idling)."""
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        row = conn.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s",
            (database,),
        ).fetchone()
    return int(row[0]) if row else 0


def postmaster_pid() -> int | None:
    """The postmaster of the cluster at PG_ADMIN_URL: the parent of a backend it serves
    (not merely the first postgres process on the machine, which may be another cluster)."""
    try:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=10) as conn:
            backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[index]
            for line in Path(f"/proc/{backend}/status").read_text().splitlines():
                if line.startswith("PPid:"):
                    return int(line.split()[1])
    except (psycopg.OperationalError, OSError):
        pass
    return None


class BackendCPU:
    """CPU used by the PostgreSQL backends serving one database between start() and stop(),
    and how many sessions were opened to it meanwhile.

    A thread looks at the postmaster's children every 50 ms (their process titles name
    their database) and keeps each backend's latest CPU reading, so a backend that a pool
    opened and closed during the run is counted up to its last sighting, not missed: an
    app whose pool churns connections pays their start-up here too. What a backend used
    after its last sighting, or one that lived less than 50 ms, is still missed: this can
    only undercount (`sessions` says how much churn there was to miss)."""

    INTERVAL = 0.05

    def __init__(self, database: str) -> None:
        self.database = database
        self.before: dict[int, float] = {}
        self.latest: dict[int, float] = {}
        self.sessions = 0
        self._sessions_before = 0
        self._postmaster: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _backends(self) -> list[int]:
        if self._postmaster is None:
            return []
        marker = f" {self.database} "
        return [pid for pid in children(self._postmaster) if marker in cmdline(pid)]

    def _sample(self) -> None:
        for pid in self._backends():
            seconds = precise_cpu_seconds(pid)
            if seconds:
                self.latest[pid] = seconds

    def _watch(self) -> None:
        while not self._stop.wait(self.INTERVAL):
            self._sample()

    def start(self) -> None:
        self._sessions_before = sessions_opened(self.database)
        self._postmaster = postmaster_pid()
        self.before = {pid: precise_cpu_seconds(pid) for pid in self._backends()}
        self.latest = dict(self.before)
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def stop(self) -> float:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()  # it wakes every INTERVAL
        self._sample()
        if not self.latest:
            log(f"  no PostgreSQL backend of {self.database} was seen: its CPU reads as 0")
        # A backend reports its session to pg_stat_database within about a second.
        time.sleep(1.1)
        self.sessions = sessions_opened(self.database) - self._sessions_before
        # A backend first seen during the run was born during it: all its CPU counts.
        return sum(seconds - self.before.get(pid, 0.0) for pid, seconds in self.latest.items())


def sessions_opened(database: str) -> int:
    """Sessions ever opened to a database (pg_stat_database.sessions, PostgreSQL 14+)."""
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        row = conn.execute(
            "SELECT sessions FROM pg_stat_database WHERE datname = %s", (database,)
        ).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def system_busy() -> tuple[float, float]:
    """(busy, total) jiffies over all CPUs, from /proc/stat."""
    parts = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = parts[3] + parts[4]
    total = sum(parts[:8])
    return (total - idle) / CLK_TCK, total / CLK_TCK


@dataclass
class Server:
    """A uvicorn server started by bench/serve.py in its own process group."""

    name: str
    target: str
    port: int
    workers: int
    env: dict[str, str]
    access_log: bool
    log_path: Path
    proxy_headers: bool = False
    # Run as `uvicorn module:app` would be, with uvicorn's own defaults (its log config,
    # access log, Server and Date headers) rather than `letters serve`'s: `target` then
    # names the app object, not a factory.
    plain: bool = False
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        if self.plain:
            command = [PYTHON, "-m", "uvicorn", self.target, "--port", str(self.port)]
        else:
            command = [PYTHON, "-m", "bench.serve", self.target, "--port", str(self.port)]
        command += ["--workers", str(self.workers)]
        if not self.access_log:
            command.append("--no-access-log")
        if self.proxy_headers:
            command.append("--proxy-headers")
        with self.log_path.open("wb") as out:
            self.process = subprocess.Popen(
                command,
                cwd=run_root(),
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start:\n{self.log()[-3000:]}")
            started = self.log().count("Application startup complete")
            if started >= self.workers and self._healthy():
                return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not start in {START_TIMEOUT}s:\n{self.log()[-3000:]}")

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/healthz", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def worker_pids(self) -> list[int]:
        """The processes that serve requests: uvicorn itself with one worker, else its children."""
        assert self.process is not None
        if self.workers == 1:
            return [self.process.pid]
        return [
            pid
            for pid in children(self.process.pid)
            if "multiprocessing" in cmdline(pid) and "resource_tracker" not in cmdline(pid)
        ]

    def cpu(self) -> float:
        assert self.process is not None
        pids = {self.process.pid, *self.worker_pids()}
        return sum(cpu_seconds(pid) for pid in pids)

    def memory(self) -> list[dict[str, int]]:
        return [{"pid": pid, **memory_kb(pid)} for pid in self.worker_pids()]

    def stop(self) -> None:
        stop_group(self.process)


def stop_group(process: subprocess.Popen[Any] | None) -> None:
    """SIGTERM the process, wait (bounded), then SIGKILL whatever is left of its group."""
    if process is None:
        return
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=STOP_TIMEOUT)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=STOP_TIMEOUT)


@contextlib.contextmanager
def running(*servers: Server) -> Iterator[None]:
    try:
        for server in servers:
            server.start()
        yield
    finally:
        for server in servers:
            server.stop()


# ---------------------------------------------------------------- wrk


@dataclass
class WrkResult:
    requests: int
    duration: float
    rps: float
    latency_avg_ms: float
    latency_p50_ms: float
    latency_p99_ms: float
    non_2xx: int
    socket_errors: int
    cpu: float  # CPU seconds used by wrk itself
    output: str
    extra: dict[str, str] = field(default_factory=dict)  # KEY=value lines printed by a script


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        return float("nan")
    value, unit = float(match.group(1)), match.group(2)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def parse_wrk(output: str, cpu: float) -> WrkResult:
    def find(pattern: str, default: str = "0") -> str:
        match = re.search(pattern, output, re.MULTILINE)
        return match.group(1) if match else default

    requests = int(find(r"^\s*(\d+) requests in"))
    duration = _ms(find(r"requests in ([\d.]+\w+),", "nan")) / 1000
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    extra = dict(re.findall(r"^BENCH ([A-Za-z0-9_]+)=(.*)$", output, re.MULTILINE))
    return WrkResult(
        requests=requests,
        duration=duration,
        rps=float(find(r"^Requests/sec:\s+([\d.]+)")),
        latency_avg_ms=_ms(find(r"^\s+Latency\s+(\S+)", "nan")),
        latency_p50_ms=_ms(find(r"^\s+50%\s+(\S+)", "nan")),
        latency_p99_ms=_ms(find(r"^\s+99%\s+(\S+)", "nan")),
        non_2xx=int(find(r"Non-2xx or 3xx responses: (\d+)")),
        socket_errors=sum(int(x) for x in errors.groups()) if errors else 0,
        cpu=cpu,
        output=output,
        extra=extra,
    )


def run_wrk(
    url: str,
    duration: float,
    threads: int = 2,
    connections: int = 64,
    script: Path | None = None,
    script_args: list[str] | None = None,
    headers: list[str] | None = None,
    stop_when: Callable[[], bool] | None = None,
) -> WrkResult:
    """Run wrk for `duration` seconds (killed if it overruns by 30 s); parse its report.

    `stop_when()`, polled about 4 times a second, can end the run early: wrk gets SIGINT,
    which makes it stop and still print its report (its duration is then the real one)."""
    command = [WRK, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s"]
    command.append("--latency")
    command += ["--timeout", "10s"]
    for header in headers or []:
        command += ["-H", header]
    if script is not None:
        command += ["-s", str(script)]
    command.append(url)
    if script_args:
        command += ["--", *script_args]
    with tempfile.TemporaryFile() as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + duration + 30
        usage = None
        next_check = time.monotonic() + 1.0
        interrupted = False
        while time.monotonic() < deadline:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                process.returncode = os.waitstatus_to_exitcode(status)
                break
            if stop_when is not None and not interrupted and time.monotonic() >= next_check:
                next_check = time.monotonic() + 0.25
                if stop_when():
                    process.send_signal(signal.SIGINT)
                    interrupted = True
            time.sleep(0.05)
        else:
            stop_group(process)
            raise RuntimeError("wrk overran its time bound")
        out.seek(0)
        output = out.read().decode(errors="replace")
    if process.returncode != 0:
        raise RuntimeError(f"wrk failed ({process.returncode}):\n{output}")
    cpu = (usage.ru_utime + usage.ru_stime) if usage else 0.0
    return parse_wrk(output, cpu)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def fmt_mb(kb: int | None) -> str:
    return "?" if kb is None else f"{kb / 1024:.0f} MB"


def busy_cores(seconds: float = 1.0) -> float:
    """How many cores the whole machine kept busy over the next `seconds`."""
    busy0, _ = system_busy()
    time.sleep(seconds)
    busy1, _ = system_busy()
    return (busy1 - busy0) / seconds


def wait_quiet(max_wait: float, threshold: float = 0.25) -> float:
    """Wait (at most `max_wait` seconds) until other work on the machine keeps fewer than
    `threshold` cores busy; returns the last reading. The machine is shared: a reading
    taken while someone else's test suite runs would measure them as much as us."""
    deadline = time.monotonic() + max_wait
    reading = busy_cores()
    while reading > threshold and time.monotonic() < deadline:
        time.sleep(2)
        reading = busy_cores()
    if reading > threshold:
        log(f"  machine still busy ({reading:.2f} cores) after waiting {max_wait:.0f} s; going on")
    return reading
