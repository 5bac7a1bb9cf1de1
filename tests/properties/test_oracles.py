"""No oracle: asking for a manage link, or for an author's sign-in link, does the same work
on the request path whether or not the address signed (or writes letters here). Checked
structurally, not by timing: the statements the request runs and the work it leaves for
the sender are compared, then the sender is run to see that only the real one gets mail.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from starlette.testclient import TestClient

from letters.app import create_app
from letters.db import make_async_engine, make_sessionmaker, writer
from letters.jobs import preparer
from letters.mail import outbox
from letters.mail.backend import make_backend
from letters.models import OutboxMessage
from tests.authors.helpers import make_author
from tests.conftest import make_settings
from tests.helpers import confirm_api, csrf_from, sign_api

SAME_ORIGIN = {"sec-fetch-site": "same-origin"}


@contextmanager
def statements_of(app: Any) -> Iterator[list[str]]:
    """The SQL statements the app runs meanwhile, without their parameters."""
    seen: list[str] = []
    engine = app.state.engine.sync_engine

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(re.sub(r"\s+", " ", statement).strip())

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def queued_jobs(db: Any, settings: Any) -> list[Any]:
    db.rollback()
    rows = db.exec(OutboxMessage.__table__.select()).all()  # type: ignore[attr-defined]
    return [outbox.message_of(OutboxMessage(**row._mapping), settings.keys) for row in rows]


def drain(settings: Any) -> outbox.DrainResult:
    async def run() -> outbox.DrainResult:
        engine = make_async_engine(settings)
        try:
            maker = make_sessionmaker(writer(engine))
            return await outbox.drain(
                maker, make_backend(settings), settings.keys, prepare=preparer(settings, maker)
            )
        finally:
            await engine.dispose()

    return asyncio.run(run())


def test_a_manage_request_does_the_same_work_for_a_signer_and_a_stranger(
    database_url, tmp_path, letter, mailbox, db
):
    settings = make_settings(database_url, instance_path=tmp_path, smtp_url=mailbox.url)
    with TestClient(create_app(settings)) as client:
        assert sign_api(client, "ada@microsoft.com").status_code == 202
        mailbox.wait_for(1)
        assert confirm_api(client, mailbox.last_token("ada@microsoft.com")).status_code == 200

    quiet = make_settings(
        database_url, instance_path=tmp_path, smtp_url=mailbox.url, mail_in_app=False
    )
    app = create_app(quiet)
    answers, statements = [], []
    with TestClient(app) as client:
        for email in ["ada@microsoft.com", "grace@microsoft.com"]:
            with statements_of(app) as seen:
                response = client.post(
                    "/letters/test-letter/manage",
                    data={"email": email},
                    headers=SAME_ORIGIN,
                    follow_redirects=False,
                )
            answers.append((response.status_code, response.headers["location"], response.text))
            statements.append(seen)
    assert answers[0] == answers[1]
    assert answers[0][0] == 303
    assert statements[0] == statements[1]
    assert statements[0], "the request ran no statement at all"
    # The same work left for the sender: one sealed job each, of the same kind.
    jobs = queued_jobs(db, quiet)
    assert [type(job) for job in jobs] == [outbox.Job, outbox.Job]
    assert {job.kind for job in jobs} == {"manage-link"}

    # Only the sender finds out: the signer gets a link, the stranger nothing.
    result = drain(quiet)
    assert (result.sent, result.skipped) == (1, 1)
    mailbox.wait_for(2)
    assert [message["To"] for message in mailbox.messages] == ["ada@microsoft.com"] * 2
    assert "/manage/" in mailbox.text_of(mailbox.messages[-1])
    assert queued_jobs(db, quiet) == []


def test_an_author_sign_in_does_the_same_work_for_an_author_and_a_stranger(
    database_url, tmp_path, engine, mailbox, db
):
    make_author(engine, "writer@example.org")
    settings = make_settings(
        database_url, instance_path=tmp_path, smtp_url=mailbox.url, mail_in_app=False
    )
    app = create_app(settings)
    answers, statements = [], []
    with TestClient(app) as client:
        csrf = csrf_from(client.get("/authors/sign-in").text)
        for email in ["writer@example.org", "nobody@example.org"]:
            with statements_of(app) as seen:
                response = client.post(
                    "/authors/sign-in",
                    data={"csrftoken": csrf, "email": email},
                    follow_redirects=False,
                )
            answers.append((response.status_code, response.headers["location"], response.text))
            statements.append(seen)
    assert answers[0] == answers[1]
    assert answers[0][0] == 303
    assert statements[0] == statements[1]
    assert {job.kind for job in queued_jobs(db, settings)} == {"author-sign-in"}

    result = drain(settings)
    assert (result.sent, result.skipped) == (1, 1)
    mailbox.wait_for(1)
    assert [message["To"] for message in mailbox.messages] == ["writer@example.org"]
    assert "/authors/sign-in/" in mailbox.text_of(mailbox.messages[0])


def test_manage_and_sign_in_jobs_wait_for_the_runners_beat_not_the_answer(
    database_url, tmp_path, letter, engine, mailbox, db
):
    # Run right after the answer, a job slows this process only when there is an email to
    # make: the runner takes them on its own beat instead (here: only when told to).
    make_author(engine, "writer@example.org")
    settings = make_settings(
        database_url, instance_path=tmp_path, smtp_url=mailbox.url, mail_job_seconds=60
    )
    app = create_app(settings)
    with TestClient(app) as client:
        assert sign_api(client, "ada@microsoft.com").status_code == 202
        mailbox.wait_for(1)
        assert confirm_api(client, mailbox.last_token("ada@microsoft.com")).status_code == 200
        for email in ["ada@microsoft.com", "grace@microsoft.com"]:
            response = client.post(
                "/letters/test-letter/manage",
                data={"email": email},
                headers=SAME_ORIGIN,
                follow_redirects=False,
            )
            assert response.status_code == 303
        csrf = csrf_from(client.get("/authors/sign-in").text)
        for email in ["writer@example.org", "nobody@example.org"]:
            response = client.post(
                "/authors/sign-in",
                data={"csrftoken": csrf, "email": email},
                follow_redirects=False,
            )
            assert response.status_code == 303

        # Answered, and nothing done yet: four jobs wait in the outbox and in the runner.
        assert len(queued_jobs(db, settings)) == 4
        runner = app.state.job_runner
        assert len(runner.waiting) == 4
        assert len(mailbox.messages) == 1

        result = client.portal.call(runner.run_once)
        assert (result.sent, result.skipped) == (2, 2)
        mailbox.wait_for(3)
        assert sorted(message["To"] for message in mailbox.messages[1:]) == [
            "ada@microsoft.com",
            "writer@example.org",
        ]
        assert runner.waiting == []
        assert queued_jobs(db, settings) == []
