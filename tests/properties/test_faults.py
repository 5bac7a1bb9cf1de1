"""Fault tests: a real `letters serve` loses a worker, the whole server, or its database.

Each test starts the server as a subprocess (its own process group, always killed in a
`finally`), talks to it over loopback HTTP and checks afterwards, in the database, that
nothing was lost or counted twice:

- a worker SIGKILLed in the middle of a confirmation storm: every confirmation answered
  with success is counted, the links whose answer was lost can be used again (or are
  already used, if the kill came after the commit), and the counts equal the rows;
- the whole server SIGKILLed in a signing storm: every email the outbox accepted is sent
  once by `letters worker --once`; two workers racing over one outbox send each email once;
- PostgreSQL stopped under load: the app answers 503 (with Retry-After) while it is down,
  never 500, and recovers by itself once it is back. On SQLite the database cannot be
  taken away from a running server that holds it open, so the same is checked with a
  full disk (the server's file-size limit set to 0): writes answer 503, then recover.
"""

from __future__ import annotations

import asyncio
import os
import re
import resource
import shutil
import signal
import ssl
import subprocess
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from sqlalchemy import make_url
from sqlmodel import Session, col, func, select

from letters.mail import outbox
from letters.mail.backend import Message
from letters.models import OutboxMessage, PendingSignature, Signature
from letters.record import links
from letters.settings import normalize_database_url
from letters.tokens import Signer
from tests.conftest import (
    LINK,
    ON_POSTGRES,
    SECRET,
    TEST_DATABASE_URL,
    Mailbox,
    make_settings,
)
from tests.helpers import assert_consistent, pending_count
from tests.live import (
    REQUEST_TIMEOUT,
    STOP_TIMEOUT,
    Server,
    base_env,
    http_client,
    letters_command,
    running_server,
    stop_process,
    wait_for_log,
)
from tests.properties import test_concurrency as concurrency
from tests.properties.test_concurrency import Person, writer_sessions

RECOVERY_TIMEOUT = 20.0
TLS = ssl.create_default_context()  # made once: a client that makes its own is slow to start
USED = "This link has already been used."
UNAVAILABLE_MESSAGE = "briefly unavailable"
# Every request below comes from 127.0.0.1; the per-IP limit is not under test.
NO_IP_LIMIT = {"LIMIT_PER_IP": "100000"}


# --- a server in a subprocess (tests/live.py), and `letters worker` ------------------------


def serve(
    database_url: str, tmp_path: Path, *args: str, smtp_url: str = "", **env: str
) -> AbstractContextManager[Server]:
    """`running_server` (tests/live.py) with the per-IP limit out of the way."""
    return running_server(database_url, tmp_path, *args, smtp_url=smtp_url, **NO_IP_LIMIT, **env)


def connections_of(pid: int, port: int) -> int:
    """How many open TCP connections to `port` a process holds (0 if it cannot be told)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with suppress(OSError), open(table, encoding="ascii") as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                if local_port == port and fields[3] == "01":  # ESTABLISHED
                    inodes.add(fields[9])
    count = 0
    with suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    count += 1
    return count


def run_worker(database_url: str, smtp_url: str, tmp_path: Path) -> subprocess.Popen[bytes]:
    """Start `letters worker --once` (its output in a pipe; read it with `finish`)."""
    return subprocess.Popen(
        letters_command("worker", "--once"),
        env=base_env(
            database_url, smtp_url, INSTANCE_PATH=str(tmp_path / "instance"), **NO_IP_LIMIT
        ),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def finish(process: subprocess.Popen[bytes], timeout: float = 60.0) -> str:
    """Wait (bounded) for a `letters worker --once`; its output. Kills it on timeout."""
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_process(process, signal.SIGKILL)
        raise AssertionError(f"letters worker did not finish in {timeout}s") from None
    text = output.decode("utf-8", errors="replace")
    assert process.returncode == 0, f"letters worker exited with {process.returncode}:\n{text}"
    return text


def sent_by(output: str) -> int:
    """What a `letters worker --once` reported: it must have sent everything it claimed."""
    reports = re.findall(r"sent (\d+), failed (\d+)", output)
    assert all(failed == "0" for _, failed in reports), output
    return sum(int(sent) for sent, _ in reports)


# --- HTTP ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """One HTTP exchange: a status and JSON body, or the transport error that replaced it."""

    status: int | None
    body: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    text: str = ""
    error: str | None = None

    @property
    def code(self) -> str | None:
        problem = self.body.get("error")
        return problem.get("code") if isinstance(problem, dict) else None

    @property
    def used(self) -> bool:
        problem = self.body.get("error") or {}
        return (
            self.status == 400 and self.code == "invalid_token" and problem.get("message") == USED
        )

    @property
    def verified(self) -> bool:
        return self.status == 200 and self.body.get("status") == "verified"


def exchange(url: str, method: str, path: str, body: dict[str, Any] | None = None) -> Outcome:
    """One request over a new connection (so requests spread over the worker processes)."""
    try:
        with http_client(url, verify=TLS) as client:
            response = client.request(method, path, json=body)
    except httpx.TransportError as error:
        return Outcome(status=None, error=type(error).__name__)
    data: dict[str, Any] = {}
    if response.headers.get("content-type", "").startswith("application/json"):
        with suppress(ValueError):
            data = response.json()
    return Outcome(response.status_code, data, dict(response.headers), response.text[:2000])


def confirm_http(url: str, token: str) -> Outcome:
    return exchange(url, "POST", "/api/verify", {"token": token})


def sign_http(url: str, email: str, name: str = "", show_name: bool = False) -> Outcome:
    body = {"email": email, "name": name, "title": "", "show_name": show_name}
    return exchange(url, "POST", "/api/letters/test-letter/signatures", body)


def assert_unavailable(outcome: Outcome, where: str) -> None:
    """The clear 503 the app owes its callers while the database is away."""
    assert outcome.status == 503, (where, outcome)
    assert outcome.headers.get("retry-after", "").isdigit(), (where, outcome.headers)
    if where.startswith("/api/"):
        assert outcome.code == "unavailable", (where, outcome)
        assert UNAVAILABLE_MESSAGE in outcome.body["error"]["message"], (where, outcome)
    else:
        assert UNAVAILABLE_MESSAGE in outcome.text, (where, outcome.text)


# --- the database, from the test process ----------------------------------------------------


def people(prefix: str, count: int) -> list[Person]:
    return [
        (
            f"{prefix}.{n}@{'github.com' if n % 3 == 0 else 'microsoft.com'}",
            f"{prefix.title()} {n}",
            n % 2 == 0,
        )
        for n in range(count)
    ]


def request_links(database_url: str, signers: list[Person]) -> list[str]:
    """Pending signatures made as a sign request makes them; the tokens their links carry."""
    settings = make_settings(database_url)

    async def main() -> list[str]:
        async with writer_sessions(settings) as maker:
            return await concurrency.request_links(maker, settings, signers)

    return asyncio.run(main())


def enqueue_messages(database_url: str, addresses: list[str]) -> None:
    settings = make_settings(database_url)

    async def main() -> None:
        async with writer_sessions(settings) as maker, maker() as session:
            for address in addresses:
                text = f"Hello {address}"
                message = Message(to=address, subject="Race", text=text, html=f"<p>{text}</p>")
                await outbox.enqueue(session, settings.keys, message)
            await session.commit()

    asyncio.run(main())


def outbox_count(db: Session) -> int:
    db.rollback()  # end the read snapshot so the next query sees the latest commits
    return db.exec(select(func.count()).select_from(OutboxMessage)).one()


def signer_hashes(db: Session, tokens: list[str]) -> list[str]:
    """The email hash of the pending signature behind each link."""
    signer = Signer(SECRET)
    ids = [links.read(signer, links.SIGNER, token, 3600)[0] for token in tokens]
    db.rollback()
    rows = db.exec(select(PendingSignature).where(col(PendingSignature.id).in_(ids))).all()
    by_id = {row.id: row.email_hash for row in rows}
    return [by_id[pending_id] for pending_id in ids]


def signature_hashes(db: Session) -> set[str]:
    db.rollback()
    return set(db.exec(select(Signature.email_hash)).all())


def expected_counts(signers: list[Person]) -> tuple[int, int, dict[str, int]]:
    named = sum(1 for _, _, show in signers if show)
    organizations = Counter(
        "GitHub" if email.endswith("@github.com") else "Microsoft" for email, _, _ in signers
    )
    return named, len(signers) - named, dict(organizations)


def assert_everyone_counted_once(db: Session, signers: list[Person]) -> None:
    c = assert_consistent(db)
    named, hidden, organizations = expected_counts(signers)
    assert c["verified"] == c["rows"] == len(signers), c
    assert (c["named"], c["hidden"]) == (named, hidden), c
    assert c["orgs"] == organizations, c


# --- 1. a worker killed in a confirmation storm ---------------------------------------------


def test_worker_killed_in_a_confirmation_storm_loses_no_confirmation(
    database_url, letter, db, tmp_path
):
    signers = people("storm", 200)
    tokens = request_links(database_url, signers)
    kill_after = 50

    with serve(
        database_url, tmp_path, "--workers", "2", MAIL_IN_APP="false", CACHE_SECONDS="0"
    ) as server:
        wait_for_log(server, "Application startup complete.", count=2)
        workers = server.worker_pids()
        assert len(workers) == 2, server.log()
        port = int(server.url.rsplit(":", 1)[1])

        first: dict[str, Outcome] = {}
        with ThreadPoolExecutor(16) as pool:
            futures = {pool.submit(confirm_http, server.url, token): token for token in tokens}
            in_flight_at_kill = 0
            for done, future in enumerate(as_completed(futures, timeout=60), start=1):
                first[futures[future]] = future.result()
                if done == kill_after:
                    # The worker holding more of the storm's connections, so that some
                    # confirmations are cut off mid-request.
                    victim = max(workers, key=lambda pid: connections_of(pid, port))
                    os.kill(victim, signal.SIGKILL)
                    in_flight_at_kill = sum(not other.done() for other in futures)
        assert in_flight_at_kill > 0, "the storm was over before the kill"

        # The storm gets success or a broken connection; never a refusal or a server error.
        ok = [token for token, outcome in first.items() if outcome.verified]
        lost = [token for token, outcome in first.items() if outcome.error is not None]
        unexpected = [o for o in first.values() if not o.verified and o.error is None]
        assert not unexpected, unexpected[:5]
        assert len(ok) + len(lost) == len(tokens)
        assert lost, "the kill cut off no confirmation"

        # Every success answered is counted, even before the lost answers are retried.
        counted = signature_hashes(db)
        assert set(signer_hashes(db, ok)) <= counted
        c = assert_consistent(db)
        assert len(ok) <= c["verified"] <= len(tokens)

        # The supervisor replaces the dead worker; meanwhile the other one serves.
        assert server.process.poll() is None, server.log()
        wait_for_log(server, f"Child process [{victim}] died")
        wait_for_log(server, "Application startup complete.", count=3)
        assert len(server.worker_pids()) == 3, server.log()

        # A link whose answer was lost is used now, or was used just before the kill.
        retried = {token: confirm_http(server.url, token) for token in lost}
        assert all(o.verified or o.used for o in retried.values()), retried
        already = [token for token, outcome in retried.items() if outcome.used]
        assert len(already) <= in_flight_at_kill
        assert set(signer_hashes(db, already)) <= counted  # counted before the kill

        # Every link is now used, and using it again counts nothing more.
        again = [confirm_http(server.url, token) for token in tokens[:: len(tokens) // 10]]
        assert all(o.used for o in again), again
        for _ in range(10):
            assert exchange(server.url, "GET", "/healthz").status == 200
        detail = exchange(server.url, "GET", "/api/letters/test-letter")
        assert detail.status == 200, detail
        assert detail.body["verified_count"] == len(signers)

    assert_everyone_counted_once(db, signers)
    assert signature_hashes(db) == set(signer_hashes(db, tokens))
    assert pending_count(db) == len(tokens)
    db.rollback()
    assert all(row.used_at is not None for row in db.exec(select(PendingSignature)).all())
    log = server.log()
    assert '/api/verify HTTP/1.1" 500' not in log
    assert "Traceback" not in log


# --- 2. no email in the outbox is lost -----------------------------------------------------


def test_server_killed_while_signing_loses_no_email(database_url, letter, db, mailbox, tmp_path):
    before = [email for email, _, _ in people("early", 20)]
    storm = [email for email, _, _ in people("storm", 80)]
    kill_after = 20

    with serve(
        database_url, tmp_path, "--workers", "2", smtp_url=mailbox.url, MAIL_IN_APP="false"
    ) as server:
        wait_for_log(server, "Application startup complete.", count=2)
        for email in before:
            outcome = sign_http(server.url, email)
            assert outcome.status == 202, outcome
        # A storm of sign requests, and the whole server (supervisor and workers) killed
        # in the middle of it.
        answers: dict[str, Outcome] = {}
        with ThreadPoolExecutor(12) as pool:
            futures = {pool.submit(sign_http, server.url, email): email for email in storm}
            in_flight_at_kill = 0
            for done, future in enumerate(as_completed(futures, timeout=60), start=1):
                answers[futures[future]] = future.result()
                if done == kill_after:
                    os.killpg(server.process.pid, signal.SIGKILL)
                    in_flight_at_kill = sum(not other.done() for other in futures)
        server.process.wait(timeout=STOP_TIMEOUT)
        assert server.process.returncode == -signal.SIGKILL
    assert in_flight_at_kill > 0, "the storm was over before the kill"

    accepted = before + [email for email, outcome in answers.items() if outcome.status == 202]
    unexpected = [o for o in answers.values() if o.status != 202 and o.error is None]
    assert not unexpected, unexpected[:5]
    assert len(accepted) >= len(before) + kill_after
    assert mailbox.messages == []  # MAIL_IN_APP=false: the server itself sent nothing

    # Each committed sign request left one pending signature and one email to send.
    queued = outbox_count(db)
    assert queued == pending_count(db)
    assert len(accepted) <= queued <= len(before) + len(storm)

    output = finish(run_worker(database_url, mailbox.url, tmp_path))
    assert sent_by(output) == queued, output
    mailbox.wait_for(queued, timeout=10)
    time.sleep(0.2)  # nothing more may arrive
    recipients = Counter(message["To"] for message in mailbox.messages)
    assert len(mailbox.messages) == queued
    assert max(recipients.values()) == 1, "an email was sent twice"
    assert set(accepted) <= set(recipients), "an accepted sign request lost its email"
    assert set(recipients) <= set(before + storm)
    assert outbox_count(db) == 0  # sent, and the plaintext addresses are gone

    # Each email carries the link of its own pending signature.
    tokens = [LINK.search(mailbox.text_of(message)) for message in mailbox.messages]
    assert all(tokens)
    hashes = signer_hashes(db, [match.group(1) for match in tokens if match])
    assert len(set(hashes)) == queued

    # A second run finds nothing left to send.
    assert sent_by(finish(run_worker(database_url, mailbox.url, tmp_path))) == 0
    assert len(mailbox.messages) == queued


@pytest.fixture
def slow_mailbox(mailbox: Mailbox, monkeypatch: pytest.MonkeyPatch) -> Mailbox:
    """The test's SMTP server, taking a while over each message so senders overlap."""
    receive = mailbox.handle_DATA

    async def handle_slowly(server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(0.02)
        return await receive(server, session, envelope)

    # aiosmtpd looks the hook up on each new connection, after this has replaced it.
    monkeypatch.setattr(mailbox, "handle_DATA", handle_slowly)
    return mailbox


def test_two_workers_racing_over_the_outbox_send_each_email_once(
    database_url, db, slow_mailbox, tmp_path
):
    addresses = [f"race.{n}@example.org" for n in range(150)]
    enqueue_messages(database_url, addresses)
    assert outbox_count(db) == len(addresses)

    workers = [run_worker(database_url, slow_mailbox.url, tmp_path) for _ in range(2)]
    try:
        outputs = [finish(worker) for worker in workers]
    finally:
        for worker in workers:
            stop_process(worker, signal.SIGKILL)

    sent = [sent_by(output) for output in outputs]
    assert sum(sent) == len(addresses), outputs
    assert all(count > 0 for count in sent), f"the workers did not overlap: {sent}"
    slow_mailbox.wait_for(len(addresses), timeout=10)
    time.sleep(0.2)  # nothing more may arrive
    recipients = Counter(message["To"] for message in slow_mailbox.messages)
    assert len(slow_mailbox.messages) == len(addresses)
    assert sorted(recipients) == sorted(addresses)
    assert max(recipients.values()) == 1, "an email was sent twice"
    assert outbox_count(db) == 0


# --- 3. the database goes away under load ----------------------------------------------------


@dataclass(frozen=True)
class Cluster:
    version: str
    name: str
    port: int

    def ctl(self, action: str, *extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", self.version, self.name, action, *extra],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def wait_ready(self, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready = subprocess.run(
                ["pg_isready", "-q", "-h", "127.0.0.1", "-p", str(self.port), "-t", "1"],
                check=False,
                timeout=10,
            )
            if ready.returncode == 0:
                return True
            time.sleep(0.2)
        return False


def local_cluster() -> Cluster | str:
    """The Debian-style PostgreSQL cluster behind TEST_DATABASE_URL, or why there is none."""
    if not ON_POSTGRES:
        return "runs on PostgreSQL only (TEST_DATABASE_URL is not set)"
    if os.geteuid() != 0:
        return "stopping PostgreSQL needs root"
    if not (shutil.which("pg_ctlcluster") and shutil.which("pg_lsclusters")):
        return "pg_ctlcluster is not available"
    if not shutil.which("pg_isready"):
        return "pg_isready is not available"
    url = make_url(normalize_database_url(TEST_DATABASE_URL))
    if url.host not in ("127.0.0.1", "localhost", "::1"):
        return f"the test database is not on this machine ({url.host})"
    port = url.port or 5432
    listing = subprocess.run(
        ["pg_lsclusters", "--no-header"], capture_output=True, text=True, timeout=30, check=False
    )
    for line in listing.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[2] == str(port) and parts[3].startswith("online"):
            return Cluster(version=parts[0], name=parts[1], port=port)
    return f"no local online cluster listens on port {port}"


CLUSTER = local_cluster()


class Load:
    """Background traffic while the database goes away: reads, sign requests, confirmations.

    Every answer is kept with the time it came, for the checks afterwards.
    """

    def __init__(self, url: str, tokens: list[str], threads: int = 4) -> None:
        self.url = url
        self.tokens = list(tokens)
        self.threads = [threading.Thread(target=self._run, args=(n,)) for n in range(threads)]
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.outcomes: list[tuple[float, str, Outcome]] = []
        self.confirmations: dict[str, list[Outcome]] = {}
        self.failures: list[BaseException] = []

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=REQUEST_TIMEOUT * 2)

    def _next_token(self) -> str | None:
        with self.lock:
            return self.tokens.pop() if self.tokens else None

    def _run(self, number: int) -> None:
        try:
            count = 0
            while not self.stop.is_set():
                count += 1
                kind = count % 4
                token = self._next_token() if kind == 0 else None
                if token is not None:
                    where, outcome = "/api/verify", confirm_http(self.url, token)
                    with self.lock:
                        self.confirmations.setdefault(token, []).append(outcome)
                elif kind == 1:
                    where = "/api/letters/test-letter/signatures"
                    outcome = sign_http(self.url, f"load.{number}.{count}@microsoft.com")
                elif kind == 2:
                    where = "/api/letters/test-letter"
                    outcome = exchange(self.url, "GET", where)
                else:
                    where = "/en/letters/test-letter"
                    outcome = exchange(self.url, "GET", where)
                with self.lock:
                    self.outcomes.append((time.monotonic(), where, outcome))
                time.sleep(0.03)
        except BaseException as error:  # pragma: no cover - reported by the test
            self.failures.append(error)

    def seen(self, where: str, status: int, since: float) -> bool:
        with self.lock:
            return any(
                at >= since and path == where and outcome.status == status
                for at, path, outcome in self.outcomes
            )


def wait_until(condition: Any, timeout: float, what: str) -> float:
    """Poll `condition()` until true; the time it took. Fails after `timeout` seconds."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, f"{what}: not within {timeout}s"
        time.sleep(0.1)
    return time.monotonic() - start


def check_load(load: Load) -> None:
    """Every answer is a success, an expected refusal or a clear 503; never a 500."""
    assert not load.failures, load.failures
    assert load.outcomes, "no traffic"
    for _, where, outcome in load.outcomes:
        assert outcome.error is None, (where, outcome)  # the server itself stayed up
        assert outcome.status != 500, (where, outcome)
        if outcome.status == 503:
            assert_unavailable(outcome, where)
        elif where == "/api/letters/test-letter/signatures":
            assert outcome.status == 202, (where, outcome)
        elif where == "/api/verify":
            assert outcome.verified, (where, outcome)  # the load uses each link once
        else:
            assert outcome.status == 200, (where, outcome)


def finish_confirmations(url: str, tokens: list[str], load: Load) -> None:
    """Use every link the load did not confirm: each is verified now or already was."""
    for token in tokens:
        answers = load.confirmations.get(token, [])
        if any(outcome.verified for outcome in answers):
            continue
        outcome = confirm_http(url, token)
        # Already used only if an earlier attempt failed with the database (commit lost).
        assert outcome.verified or (outcome.used and answers), (outcome, answers)


@pytest.mark.skipif(not isinstance(CLUSTER, Cluster), reason=str(CLUSTER))
def test_postgresql_restart_under_load_answers_503_then_recovers(
    database_url, letter, db, tmp_path
):
    assert isinstance(CLUSTER, Cluster)
    signers = people("restart", 250)
    tokens = request_links(database_url, signers)

    with serve(
        database_url, tmp_path, "--workers", "2", MAIL_IN_APP="false", CACHE_SECONDS="0"
    ) as server:
        wait_for_log(server, "Application startup complete.", count=2)
        for token in tokens[:10]:
            assert confirm_http(server.url, token).verified
        try:
            with Load(server.url, tokens[10:]) as load:
                time.sleep(0.5)  # traffic flows while the database is up
                stopped_at = time.monotonic()
                stop = CLUSTER.ctl("stop", "-m", "fast")
                assert stop.returncode == 0, stop.stderr
                # While it is down: reads and writes get a clear 503, over HTML and JSON.
                for where in ("/api/letters/test-letter", "/en/letters/test-letter"):
                    wait_until(lambda w=where: load.seen(w, 503, stopped_at), 10, f"503 on {where}")
                down = sign_http(server.url, "while.down@microsoft.com")
                assert_unavailable(down, "/api/letters/test-letter/signatures")
                for where in ("/api/letters/test-letter", "/en/letters/test-letter", "/healthz"):
                    answer = exchange(server.url, "GET", where)
                    if where == "/healthz":
                        assert answer.status == 200, answer  # liveness needs no database
                    else:
                        assert_unavailable(answer, where)
                start = CLUSTER.ctl("start")
                assert start.returncode == 0, start.stderr
                assert CLUSTER.wait_ready(), "PostgreSQL did not come back"
                started_at = time.monotonic()
                # Back: the app recovers by itself, without a restart.
                wait_until(
                    lambda: (
                        load.seen("/api/letters/test-letter", 200, started_at)
                        and load.seen("/en/letters/test-letter", 200, started_at)
                        and load.seen("/api/letters/test-letter/signatures", 202, started_at)
                    ),
                    RECOVERY_TIMEOUT,
                    "recovery after PostgreSQL came back",
                )
                time.sleep(0.5)
        finally:
            if CLUSTER.ctl("status").returncode != 0:
                CLUSTER.ctl("start")
            assert CLUSTER.wait_ready(60), "PostgreSQL did not come back"

        check_load(load)
        finish_confirmations(server.url, tokens[10:], load)
        detail = exchange(server.url, "GET", "/api/letters/test-letter")
        assert detail.status == 200, detail
        assert detail.body["verified_count"] == len(signers)
        # The app logged the outage as such, without a traceback.
        log = server.log()
        assert "database unavailable" in log
        assert "Traceback" not in log
        assert not re.search(r'HTTP/1.1" 500', log)

    assert_everyone_counted_once(db, signers)
    assert signature_hashes(db) == set(signer_hashes(db, tokens))


@pytest.mark.skipif(ON_POSTGRES, reason="the SQLite variant of the database outage test")
@pytest.mark.skipif(
    not hasattr(resource, "prlimit"), reason="needs resource.prlimit (Linux) to fill the disk"
)
def test_sqlite_disk_full_under_load_answers_503_then_recovers(database_url, letter, db, tmp_path):
    """A SQLite server cannot lose its database file while it holds it open (nor does
    chmod stop root), so the outage here is a full disk: the server's file-size limit is
    set to 0, which makes every write fail with EFBIG ("database or disk is full")."""
    signers = people("disk", 150)
    tokens = request_links(database_url, signers)

    with serve(database_url, tmp_path, MAIL_IN_APP="false", CACHE_SECONDS="0") as server:
        pid = server.process.pid  # one worker: uvicorn serves in this very process
        for token in tokens[:10]:
            assert confirm_http(server.url, token).verified
        limits = resource.prlimit(pid, resource.RLIMIT_FSIZE)
        try:
            with Load(server.url, tokens[10:]) as load:
                time.sleep(0.5)  # traffic flows while the disk has room
                full_at = time.monotonic()
                resource.prlimit(pid, resource.RLIMIT_FSIZE, (0, limits[1]))
                # Writes get a clear 503; reads still work.
                for where in ("/api/letters/test-letter/signatures", "/api/verify"):
                    wait_until(lambda w=where: load.seen(w, 503, full_at), 10, f"503 on {where}")
                assert_unavailable(
                    sign_http(server.url, "while.full@microsoft.com"),
                    "/api/letters/test-letter/signatures",
                )
                assert exchange(server.url, "GET", "/api/letters/test-letter").status == 200
                assert exchange(server.url, "GET", "/en/letters/test-letter").status == 200
                resource.prlimit(pid, resource.RLIMIT_FSIZE, limits)
                freed_at = time.monotonic()
                wait_until(
                    lambda: (
                        load.seen("/api/letters/test-letter/signatures", 202, freed_at)
                        and load.seen("/api/verify", 200, freed_at)
                    ),
                    RECOVERY_TIMEOUT,
                    "recovery after the disk had room again",
                )
        finally:
            with suppress(ProcessLookupError):
                resource.prlimit(pid, resource.RLIMIT_FSIZE, limits)

        check_load(load)
        finish_confirmations(server.url, tokens[10:], load)
        detail = exchange(server.url, "GET", "/api/letters/test-letter")
        assert detail.status == 200, detail
        assert detail.body["verified_count"] == len(signers)
        assert '" 500' not in server.log()

    assert_everyone_counted_once(db, signers)
    assert signature_hashes(db) == set(signer_hashes(db, tokens))


# --- 5. the ledger checks out at every moment of a storm --------------------------------


def test_verify_ledger_passes_at_every_moment_of_a_confirmation_storm(
    database_url, letter, db, tmp_path
):
    """While confirmations race, `letters verify-ledger` (its checker, against the live
    site: snapshot, public key and ledger over HTTP) passes every time: the chain never
    forks or gaps, and each signed snapshot's counts recount exactly from the ledger up to
    the head it names, whatever moment it was taken at."""
    from letters.checker import check, sources_for

    signers = people("chain", 100)
    tokens = request_links(database_url, signers)
    with serve(database_url, tmp_path, MAIL_IN_APP="false", CACHE_SECONDS="0") as server:
        sources = sources_for(f"{server.url}/letters/test-letter", None, None)
        lengths = []
        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(confirm_http, server.url, token) for token in tokens]
            while not all(future.done() for future in futures):
                report = check(sources)  # raises CheckFailed at the first thing that is wrong
                assert report.snapshot is not None
                lengths.append(report.snapshot["ledger"]["length"])
            outcomes = [future.result(timeout=60) for future in futures]
        failed = [outcome for outcome in outcomes if not outcome.verified]
        assert not failed, failed[:3]
        final = check(sources)
        assert final.recount.verified == final.snapshot["verified_count"] == len(signers)
    assert len(lengths) >= 3, lengths
    assert any(0 < length < len(signers) for length in lengths), lengths
    assert_everyone_counted_once(db, signers)


# --- 6. a connection the database closed while idle is replaced, not answered 503 -------


@pytest.mark.skipif(not ON_POSTGRES, reason="PostgreSQL's idle_session_timeout and backends")
def test_idle_connections_the_database_closed_never_turn_a_post_into_a_503(
    database_url, letter, db, tmp_path
):
    """The server closes pooled connections behind the app's back (idle_session_timeout, as
    PgBouncer or a firewall would, and pg_terminate_backend): the next sign request and
    confirmation still succeed on new connections, with no pre-ping round trip."""
    import psycopg

    name = "letters-stale-test"
    url = f"{database_url}?application_name={name}&options=-c%20idle_session_timeout%3D1000"
    admin_url = normalize_database_url(database_url).replace("postgresql+psycopg", "postgresql")
    signers = people("stale", 6)
    with serve(url, tmp_path, MAIL_IN_APP="false", CACHE_SECONDS="0") as server:
        tokens = []
        for index, (email, fullname, shown) in enumerate(signers[:3]):
            outcome = sign_http(server.url, email, fullname, shown)
            assert outcome.status == 202, outcome
            if index:
                time.sleep(1.5)  # every pooled connection is closed by the server meanwhile
        tokens = request_links(database_url, signers[3:])
        time.sleep(1.5)
        assert confirm_http(server.url, tokens[0]).verified
        with psycopg.connect(admin_url, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = %s",
                (name,),
            ).fetchone()[0]
        assert killed >= 0
        assert confirm_http(server.url, tokens[1]).verified
        assert sign_http(server.url, "after.kill@github.com").status == 202
        time.sleep(1.5)
        assert confirm_http(server.url, tokens[2]).verified
        log = server.log()
    assert '" 503' not in log and '" 500' not in log, log[-3000:]
    assert assert_consistent(db)["verified"] == 3


@pytest.mark.skipif(not ON_POSTGRES, reason="a PostgreSQL backend killed mid-transaction")
def test_a_transaction_whose_connection_dies_is_run_again_on_a_new_one(settings, letter):
    """`letters.db.retrying`: the connection dies under a transaction before it commits (a
    silently dropped connection is only found out that way); the whole transaction runs
    again on a fresh connection, once, and only its second run is written."""
    import psycopg
    from sqlalchemy import text

    from letters.db import make_async_engine, make_sessionmaker, retrying, writer

    admin_url = normalize_database_url(settings.database_url).replace(
        "postgresql+psycopg", "postgresql"
    )
    runs: list[int] = []

    async def work(session) -> int:
        runs.append(len(runs) + 1)
        connection = await session.connection()
        pid = (await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        note = {"n": f"run {len(runs)}"}
        await connection.execute(text("UPDATE letter SET revision_note = :n"), note)
        if len(runs) == 1:
            with psycopg.connect(admin_url, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        await connection.execute(text("SELECT 1"))
        await session.commit()
        return len(runs)

    async def main() -> int:
        engine = make_async_engine(settings)
        try:
            return await retrying(make_sessionmaker(writer(engine)), work)
        finally:
            await engine.dispose()

    assert asyncio.run(main()) == 2
    with psycopg.connect(admin_url) as check:
        assert check.execute("SELECT revision_note FROM letter").fetchone()[0] == "run 2"


@pytest.mark.skipif(not ON_POSTGRES, reason="PostgreSQL backends killed as they open")
def test_a_connection_closed_as_soon_as_it_opened_is_retried_not_refused(settings, letter):
    """The pool's check of idle connections (`letters.db`) judges only connections that have
    been returned to the pool. Were it to judge new ones too, two new connections closed
    at once (a database restarting, a pooler shedding load) would end the pool's one
    replacement with SQLAlchemy's "This connection is closed", which is not a
    connection error: no retry, and a 500. Here the server closes the first two
    connections the moment they open; the transaction runs on the third."""
    import select

    import psycopg
    from sqlalchemy import event, text

    from letters.db import make_async_engine, make_sessionmaker, retrying, writer

    admin_url = normalize_database_url(settings.database_url).replace(
        "postgresql+psycopg", "postgresql"
    )
    opened: list[int] = []

    def close_the_first_two(dbapi_connection, _record) -> None:
        opened.append(1)
        if len(opened) > 2:
            return
        pgconn = dbapi_connection.driver_connection.pgconn
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pgconn.backend_pid,))
        # Until the server's goodbye has arrived: the socket is readable, as the check sees.
        assert select.select([pgconn.socket], [], [], 5)[0]

    async def work(session) -> int:
        connection = await session.connection()
        return (await connection.execute(text("SELECT 1"))).scalar_one()

    async def main() -> int:
        engine = make_async_engine(settings)
        await engine.dispose()  # what tests opened before is not part of this count
        event.listen(engine.sync_engine, "connect", close_the_first_two)
        try:
            # Two attempts end on a closed connection; the third runs on a new one.
            return await retrying(make_sessionmaker(writer(engine)), work, attempts=3)
        finally:
            await engine.dispose()

    assert asyncio.run(main()) == 1
    assert len(opened) == 3
