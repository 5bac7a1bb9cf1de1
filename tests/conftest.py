"""Fixtures: settings, app, client, db, mailbox (this test's view of the session's real
SMTP server), letter. tests/README.md describes them.

Every test gets a fresh database. SQLite by default; PostgreSQL when TEST_DATABASE_URL is
set, in which case this run creates its own database next to the one named (so parallel
runs never share tables) and drops it at the end.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP
from jinja2.bccache import Bucket, BytecodeCache
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.pool import NullPool
from sqlmodel import Session, SQLModel
from starlette.testclient import TestClient

import letters.app as app_module
from letters.app import create_app
from letters.db import make_sync_engine
from letters.importer import import_letter, parse_letter
from letters.migrate import upgrade
from letters.models import Letter
from letters.settings import Settings, normalize_database_url

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "")
ON_POSTGRES = bool(TEST_DATABASE_URL)
SECRET = "test-secret-key-that-is-long-enough-0123456789"
LINK = re.compile(r"/verify/([A-Za-z0-9_\-.]+)")

TEST_LETTER = """---
slug: test-letter
title: Test letter
status: published
domains:
  microsoft.com: Microsoft
  github.com: GitHub
  corp.example: {organization: Example Corp, subdomains: true}
---
We ask for **better** things.
"""


def pytest_report_header() -> str:
    return f"database: {'PostgreSQL' if ON_POSTGRES else 'SQLite'}"


# --- database ---------------------------------------------------------------------------


# SQLite files go to memory when the system offers it: a test's database is written,
# checkpointed and closed several times, and each time waits for a busy disk otherwise.
MEMORY_DIR = Path("/dev/shm")


@pytest.fixture(scope="session")
def sqlite_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Where this session's SQLite databases are: in memory (/dev/shm) if writable, else
    in pytest's temporary directory. Either way a real file, as in production."""
    if not (MEMORY_DIR.is_dir() and os.access(MEMORY_DIR, os.W_OK)):
        yield tmp_path_factory.mktemp("databases")
        return
    path = Path(tempfile.mkdtemp(prefix="letters-tests-", dir=MEMORY_DIR))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def database_template(sqlite_dir: Path) -> Iterator[str]:
    """A migrated database: a SQLite file to copy, or this run's own PostgreSQL database."""
    if not ON_POSTGRES:
        path = sqlite_dir / "template.db"
        url = f"sqlite:///{path}"
        upgrade(make_settings(url))
        yield url
        return
    server_url = make_url(normalize_database_url(TEST_DATABASE_URL))
    name = f"letters_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = server_url.set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(make_settings(url))
        yield url
    finally:
        if url in _cleaners:
            _cleaners.pop(url).dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def empty_tables(url: str) -> None:
    """Empty every table of the models and restart their ids, as in a new database.

    DELETE, not TRUNCATE: TRUNCATE gives each table and index new files, which took
    PostgreSQL 0.3 to 0.9 s for this schema on a busy machine, for each test, when a test's
    tables hold a few rows, which DELETE removes in milliseconds. Children first, so that
    no foreign key is left pointing at a deleted row. The sequences a test used restart
    where they start, as TRUNCATE ... RESTART IDENTITY did."""
    engine = _cleaner(url)
    with engine.begin() as connection:
        for table in reversed(SQLModel.metadata.sorted_tables):
            connection.execute(table.delete())
        connection.execute(
            text(
                "SELECT setval(format('%I.%I', schemaname, sequencename), start_value, false)"
                " FROM pg_sequences"
                " WHERE schemaname = current_schema() AND last_value IS NOT NULL"
            )
        )


_cleaners: dict[str, Any] = {}


def _cleaner(url: str) -> Any:
    """One engine per database for `empty_tables`, kept for the session (a connection to
    PostgreSQL costs more than emptying its tables)."""
    if url not in _cleaners:
        _cleaners[url] = create_engine(url, pool_size=1, pool_pre_ping=True)
    return _cleaners[url]


@pytest.fixture
def database_url(database_template: str, sqlite_dir: Path) -> Iterator[str]:
    """This test's database: a copy of the template (SQLite), removed after the test, or
    the run's database emptied (PostgreSQL)."""
    if ON_POSTGRES:
        empty_tables(database_template)
        yield database_template
        return
    path = sqlite_dir / f"test-{uuid.uuid4().hex}.db"
    shutil.copyfile(make_url(database_template).database or "", path)
    try:
        yield f"sqlite:///{path}"
    finally:
        for leftover in (path, *(Path(f"{path}{end}") for end in ("-wal", "-shm", "-journal"))):
            leftover.unlink(missing_ok=True)


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "environment": "test",
        "database_url": database_url,
        "secret_key": SECRET,
        "base_url": "http://testserver",
        "smtp_url": "",
        "cache_seconds": 0,  # tests that change rows directly expect to read them back
        "mail_job_seconds": 0.05,  # manage and sign-in links arrive within a test's wait
        "_env_file": None,
    }
    values.update(overrides)
    return Settings(**values)


# --- mail -------------------------------------------------------------------------------


@dataclass
class Mailbox:
    """Messages received by a real SMTP server (aiosmtpd), as parsed and as they came
    (`raw`). Set `refuse` to a reply ("550 5.7.1 ...") to refuse them.

    The `mailbox` fixture gives each test a new, empty one: its view of the session's
    server (see `MailServer`). A Mailbox can also be a server's handler on its own
    (`Controller(Mailbox(...))`), as a second server a test starts itself."""

    host: str
    port: int
    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    refuse: str = ""
    # Called once the awaited messages are in: waits until the app that sent them has done
    # what it does after sending (see `client`).
    settle: Callable[[], None] | None = None
    # The test this view is for, and the server to tell of messages that come after it ended.
    test: str = ""
    server: MailServer | None = None
    finished: bool = False
    _arrived: threading.Condition = field(default_factory=threading.Condition)
    _connections: list[Any] = field(default_factory=list)
    _children: set[int] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._arrived:
            if self.finished:  # under the lock: a message is either this test's or a stray
                assert self.server is not None
                return self.server.stray(self.test, envelope)
            if self.refuse:
                return self.refuse
            message = message_from_bytes(envelope.content, policy=policy.default)
            self.messages.append(message)  # type: ignore[arg-type]
            self.raw.append(envelope.original_content or envelope.content)
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
            self._arrived.notify_all()
        return "250 OK"

    def wait_for(self, count: int, timeout: float = 5.0) -> None:
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self.messages) >= count, timeout):
                raise AssertionError(f"expected {count} emails, got {len(self.messages)}")
        if self.settle is not None:
            self.settle()

    def text_of(self, message: EmailMessage) -> str:
        part = message.get_body(preferencelist=("plain",))
        assert part is not None
        return str(part.get_content())

    def last_token(self, to: str | None = None) -> str:
        self.wait_for(1)
        for message in reversed(self.messages):
            if to is None or message["To"] == to:
                match = LINK.search(self.text_of(message))
                assert match, "no link in the email"
                return match.group(1)
        raise AssertionError(f"no email to {to}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class _Connection(SMTP):
    """One client's SMTP session, bound for good to the mailbox open when it connected."""

    mailbox: Mailbox | None = None


class MailServer:
    """The session's SMTP server: one aiosmtpd Controller (one thread, one port) for every
    test. Each test's `mailbox` is a fresh view of it; a message goes to the view that was
    open when its connection was made, never to a later test's.

    Why no message can reach the next test. By construction: every app a test starts (the
    `client`, a `letters serve` subprocess, an outbox worker) is set up after the `mailbox`
    fixture or inside the test, so it has stopped before the view is closed; closing checks
    that no process the test started is still running. Then, checked: a closed view is
    marked finished (a message on one of its connections is refused and recorded as a
    stray) and its connections are closed; a message on a connection made while no view is
    open is refused and recorded too. A stray fails the test running when it is found (the
    closing test, the next test's setup, or the end of the session), naming its test.
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = free_port()
        self.current: Mailbox | None = None
        self.strays: list[str] = []
        server = self

        class Router:
            async def handle_DATA(self, smtp: Any, session: Any, envelope: Any) -> str:
                box = getattr(smtp, "mailbox", None)
                if box is None:
                    return server.stray("", envelope)
                # Looked up on each message, so a test may wrap its view's handler.
                reply: str = await box.handle_DATA(smtp, session, envelope)
                return reply

        class SessionController(Controller):
            def factory(self) -> SMTP:
                connection = _Connection(self.handler, **self.SMTP_kwargs)
                box = server.current
                if box is not None:
                    connection.mailbox = box
                    box._connections.append(connection)
                return connection

        self.controller = SessionController(Router(), hostname=host, port=self.port)

    def stray(self, test: str, envelope: Any) -> str:
        subject = message_from_bytes(envelope.content, policy=policy.default)["Subject"]
        whose = f"for {test}, which had ended" if test else "while no test was receiving"
        self.strays.append(f"an email ({subject!r}) arrived {whose}")
        return "554 5.3.0 no test is receiving mail on this connection"

    def check(self) -> None:
        """Fail loudly if a message came that belonged to no running test."""
        strays, self.strays = self.strays, []
        if strays:
            raise AssertionError("stray email on the tests' SMTP server: " + "; ".join(strays))

    def open(self, test: str) -> Mailbox:
        self.check()
        box = Mailbox(host=self.host, port=self.port, test=test, server=self)
        box._children = running_children()
        self.current = box
        return box

    def close(self, box: Mailbox) -> None:
        with box._arrived:
            box.finished = True
        if self.current is box:
            self.current = None
        loop = self.controller.loop

        def close_connections() -> None:
            for connection in box._connections:
                if connection.transport is not None:
                    connection.transport.close()

        done = threading.Event()
        loop.call_soon_threadsafe(lambda: (close_connections(), done.set()))
        if not done.wait(5.0):
            raise AssertionError("the SMTP server did not close the test's connections")
        box._connections.clear()
        self.check()
        left = [pid for pid in running_children() - box._children if still_running(pid)]
        if left:  # a server or worker of this test could still send mail to the next one
            raise AssertionError(f"{box.test} left processes running: {sorted(left)}")


def running_children() -> set[int]:
    """The processes this one started (by any of its threads) that still run; none known
    where there is no Linux /proc to ask."""
    children: set[int] = set()
    tasks = Path("/proc/self/task")
    for task in tasks.iterdir() if tasks.is_dir() else ():
        with suppress(OSError):  # a thread that ended meanwhile
            children.update(int(pid) for pid in (task / "children").read_text().split())
    return children


def still_running(pid: int) -> bool:
    """Whether the process runs: not ended, nor a zombie waiting for its parent to reap it.
    Python's own helper for multiprocessing (its resource tracker, started by the first
    process pool and kept for the session) does not count: it sends nothing."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    if b"from multiprocessing." in command:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture(scope="session")
def mail_server() -> Iterator[MailServer]:
    server = MailServer()
    server.controller.start()
    try:
        yield server
    finally:
        server.controller.stop()
    server.check()


@pytest.fixture
def mailbox(mail_server: MailServer, request: pytest.FixtureRequest) -> Iterator[Mailbox]:
    """This test's empty view of the session's SMTP server (see `MailServer`)."""
    box = mail_server.open(request.node.nodeid)
    try:
        yield box
    finally:
        mail_server.close(box)


# --- app --------------------------------------------------------------------------------


class SharedBytecode(BytecodeCache):
    """Jinja's compiled templates, kept in memory for the whole session.

    Each test's app has its own template environment (as each process has in production),
    so each would parse and compile every page template it renders again: a few hundred
    milliseconds of most tests. The environments are all made alike (`make_templates`), and
    Jinja checks each template's source against the checksum kept with its code, so sharing
    the compiled code changes nothing but the time."""

    def __init__(self) -> None:
        self.code: dict[str, bytes] = {}

    def load_bytecode(self, bucket: Bucket) -> None:
        code = self.code.get(bucket.key)
        if code is not None:
            bucket.bytecode_from_string(code)

    def dump_bytecode(self, bucket: Bucket) -> None:
        self.code[bucket.key] = bucket.bytecode_to_string()


@pytest.fixture(scope="session", autouse=True)
def shared_template_code() -> Iterator[SharedBytecode]:
    """Every app this session makes (`create_app`) compiles each template once, not once per
    test: its environment gets the session's `SharedBytecode`, and does not check the files
    for changes on each render."""
    shared = SharedBytecode()
    make = app_module.make_templates

    def make_templates() -> Any:
        templates = make()
        templates.env.bytecode_cache = shared
        # The templates do not change during a run: no need to look at each file's time
        # again every time a page is rendered.
        templates.env.auto_reload = False
        return templates

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(app_module, "make_templates", make_templates)
        yield shared


@pytest.fixture
def settings(database_url: str, mailbox: Mailbox, tmp_path: Path) -> Settings:
    return make_settings(database_url, smtp_url=mailbox.url, instance_path=tmp_path)


@pytest.fixture
def app(settings: Settings) -> Any:
    return create_app(settings)


def jobs_done(app: Any, timeout: float = 5.0) -> None:
    """Wait until the app's job runner (letters.jobs.JobRunner) has finished what it was
    given: it deletes a job's row after the email is out, and a test that writes the
    database just then would meet SQLite's lock."""
    runner = getattr(app.state, "job_runner", None)
    deadline = time.monotonic() + timeout
    while runner is not None and not runner.idle:
        if time.monotonic() > deadline:
            raise AssertionError("the job runner did not finish")
        time.sleep(0.005)


@pytest.fixture
def client(app: Any, mailbox: Mailbox) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        mailbox.settle = lambda: jobs_done(app)
        try:
            yield test_client
        finally:
            mailbox.settle = None


@pytest.fixture
def engine(settings: Settings) -> Iterator[Any]:
    sync_engine = make_sync_engine(settings)
    yield sync_engine
    sync_engine.dispose()


@pytest.fixture
def db(engine: Any) -> Iterator[Session]:
    with Session(engine) as session:
        yield session


@pytest.fixture
def letter(engine: Any) -> Letter:
    created, _ = import_letter(engine, parse_letter(TEST_LETTER))
    return created


def make_letter(engine: Any, slug: str, status: str = "published", **extra: str) -> Letter:
    text_ = TEST_LETTER.replace("slug: test-letter", f"slug: {slug}").replace(
        "status: published", f"status: {status}"
    )
    for key, value in extra.items():
        text_ = text_.replace("---\nWe ask", f"{key}: {value}\n---\nWe ask")
    created, _ = import_letter(engine, parse_letter(text_))
    return created
