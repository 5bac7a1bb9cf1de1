"""Fixtures: settings, app, client, db, mailbox (a real SMTP server), letter.

Every test gets a fresh database. SQLite by default; PostgreSQL when TEST_DATABASE_URL is
set, in which case this run creates its own database next to the one named (so parallel
runs never share tables) and drops it at the end.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.pool import NullPool
from sqlmodel import Session, SQLModel
from starlette.testclient import TestClient

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


@pytest.fixture(scope="session")
def database_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated database: a SQLite file to copy, or this run's own PostgreSQL database."""
    if not ON_POSTGRES:
        path = tmp_path_factory.mktemp("template") / "template.db"
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
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def empty_tables(url: str) -> None:
    engine = create_engine(url)
    names = ", ".join(f'"{table.name}"' for table in SQLModel.metadata.sorted_tables)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture
def database_url(database_template: str, tmp_path: Path) -> str:
    if ON_POSTGRES:
        empty_tables(database_template)
        return database_template
    path = tmp_path / "test.db"
    shutil.copyfile(make_url(database_template).database or "", path)
    return f"sqlite:///{path}"


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
    """Messages received by a real SMTP server (aiosmtpd) running for the test, as parsed
    and as they came (`raw`). Set `refuse` to a reply ("550 5.7.1 ...") to refuse them."""

    host: str
    port: int
    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    refuse: str = ""
    # Called once the awaited messages are in: waits until the app that sent them has done
    # what it does after sending (see `client`).
    settle: Callable[[], None] | None = None
    _arrived: threading.Condition = field(default_factory=threading.Condition)

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.refuse:
            return self.refuse
        message = message_from_bytes(envelope.content, policy=policy.default)
        with self._arrived:
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


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox(host="127.0.0.1", port=free_port())
    controller = Controller(box, hostname=box.host, port=box.port)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


# --- app --------------------------------------------------------------------------------


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
