"""Nothing identifying anywhere: no address, token or hidden name in what others can see.

Known signers go through the real flows (JSON API and HTML forms, a real SMTP server):
hidden ones with distinctive names, a named one, one who withdrew, one who switched from
named to hidden, one who hid and deleted their name, one who never confirmed. Then every
GET route of the app (enumerated from `app.routes`, so a new route cannot be forgotten),
the error pages, the log records, a real server's log and a dump of the database are
searched for what must never be there.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import MetaData, Table, inspect
from sqlalchemy import select as sa_select
from sqlmodel import select
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from letters.app import create_app
from letters.models import ManageLink, OutboxMessage, PendingSignature, Signature
from letters.settings import Settings
from tests.conftest import LINK, ON_POSTGRES, make_settings
from tests.helpers import confirm_api, csrf_from, letter_csrf, sign_api
from tests.live import http_client, running_server
from tests.record.test_retention import purge
from tests.record.test_signer_control import MANAGE, manage_token

RECEIPT = re.compile(r'<code class="receipt-code">([^<]+)</code>')
PARAM = re.compile(r"{(\w+)(?::\w+)?}")
TEST_SIDE_LOGGERS = ("mail.log", "httpx")
SHOWN = ("Publicus Namedperson", "Open Engineer")  # chose to show their name: must appear

HIDDEN_SIGNERS = {
    # email: (name, title)
    "quintessa.hiddenfield@microsoft.com": ("Quintessa Hiddenfield", "Covert Ops Lead"),
    "barnaby.secretson@github.com": ("Barnaby Secretson", "Quiet Quartermaster"),
    "ottoline.quietly@eng.corp.example": ("Ottoline Quietly", "Night Shift Nurse"),
    "wilhelmina.gone@microsoft.com": ("Wilhelmina Vanishwood", "Former Fellow"),
    "sybil.switch@github.com": ("Sybil Switcher", "Turncoat Analyst"),
    "horatio.hidenow@microsoft.com": ("Horatio Hidenow", "Erased Engineer"),
    "penelope.pending@microsoft.com": ("Penelope Unconfirmo", "Draft Dodger"),
}
NAMED_EMAIL = "publicus.shown@microsoft.com"
# Their names were never public (the others' were, for a while).
NEVER_SHOWN = [
    "quintessa.hiddenfield@microsoft.com",
    "barnaby.secretson@github.com",
    "ottoline.quietly@eng.corp.example",
    "penelope.pending@microsoft.com",
]


@dataclass
class Population:
    emails: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)  # hidden, withdrawn or deleted names
    titles: list[str] = field(default_factory=list)  # theirs
    tokens: list[str] = field(default_factory=list)  # every link ever emailed
    receipts: list[str] = field(default_factory=list)
    hashes: list[str] = field(default_factory=list)  # keyed email hashes, nonce hashes

    def secrets(self) -> list[str]:
        words = [part for name in self.names for part in name.split()]
        locals_ = [email.split("@")[0] for email in self.emails]
        tokens = self.tokens + [token[:24] for token in self.tokens]
        return [
            *self.emails,
            *locals_,
            *self.names,
            *words,
            *self.titles,
            *tokens,
            *self.receipts,
            *self.hashes,
        ]


def find_secrets(text_: str, secrets: list[str]) -> list[str]:
    lowered = text_.lower()
    return [secret for secret in secrets if secret.lower() in lowered]


def html_sign(client, mailbox, email: str, name: str, title: str, show: bool, reveal: str = ""):
    data = {
        "csrftoken": letter_csrf(client),
        "email": email,
        "name": name,
        "title": title,
        "show_name": "1" if show else "0",
        "reveal_at": reveal,
    }
    before = len(mailbox.messages)
    response = client.post("/letters/test-letter/sign", data=data, follow_redirects=False)
    assert response.status_code == 303, response.text
    mailbox.wait_for(before + 1)
    return mailbox.last_token(email)


def html_confirm(client, token: str) -> str | None:
    page = client.get(f"/verify/{token}")
    done = client.post(f"/verify/{token}", data={"csrftoken": csrf_from(page.text)})
    assert done.status_code == 200, done.text
    match = RECEIPT.search(done.text)
    return match.group(1) if match else None


def api_sign(client, mailbox, email: str, name: str, title: str, show: bool, **extra: Any) -> str:
    before = len(mailbox.messages)
    response = client.post(
        "/api/letters/test-letter/signatures",
        json={"email": email, "name": name, "title": title, "show_name": show, **extra},
    )
    assert response.status_code == 202, response.text
    mailbox.wait_for(before + 1)
    return mailbox.last_token(email)


def manage(client, mailbox, email: str, action: str, **fields: str) -> None:
    before = len(mailbox.messages)
    asked = client.post(
        "/letters/test-letter/manage",
        data={"csrftoken": letter_csrf(client), "email": email},
        follow_redirects=False,
    )
    assert asked.status_code == 303
    mailbox.wait_for(before + 1)
    token = manage_token(mailbox, email)
    page = client.get(f"/manage/{token}")
    data = {"csrftoken": csrf_from(page.text), "action": action, **fields}
    assert client.post(f"/manage/{token}", data=data).status_code == 200


def populate(client, mailbox, db) -> Population:
    """The known signers, through the real flows."""
    found = Population()
    receipts = found.receipts
    quintessa, barnaby, ottoline, wilhelmina, sybil, horatio, penelope = HIDDEN_SIGNERS
    name, title = HIDDEN_SIGNERS[quintessa]
    receipts.append(html_confirm(client, html_sign(client, mailbox, quintessa, name, title, False)))
    name, title = HIDDEN_SIGNERS[barnaby]
    token = api_sign(client, mailbox, barnaby, name, title, False, reveal_at=500)
    receipts.append(confirm_api(client, token).json().get("receipt"))
    name, title = HIDDEN_SIGNERS[ottoline]
    token = html_sign(client, mailbox, ottoline, name, title, False, reveal="100")
    receipts.append(html_confirm(client, token))
    token = html_sign(client, mailbox, NAMED_EMAIL, *SHOWN, True)
    receipts.append(html_confirm(client, token))
    for email in (wilhelmina, sybil, horatio):
        name, title = HIDDEN_SIGNERS[email]
        receipts.append(
            confirm_api(client, api_sign(client, mailbox, email, name, title, True))
            .json()
            .get("receipt")
        )
    manage(client, mailbox, wilhelmina, "withdraw")
    name, title = HIDDEN_SIGNERS[sybil]
    manage(client, mailbox, sybil, "update", show_name="0", name=name, title=title)
    manage(client, mailbox, horatio, "hide")
    api_sign(client, mailbox, penelope, *HIDDEN_SIGNERS[penelope], False)  # never confirmed
    # Someone asks about an address that never signed: no email, same answer.
    client.post(
        "/letters/test-letter/manage",
        data={"csrftoken": letter_csrf(client), "email": "stranger.nobody@microsoft.com"},
    )

    found.emails = [*HIDDEN_SIGNERS, NAMED_EMAIL, "stranger.nobody@microsoft.com"]
    found.names = [name for name, _ in HIDDEN_SIGNERS.values()]
    found.titles = [title for _, title in HIDDEN_SIGNERS.values()]
    for message in mailbox.messages:
        body = mailbox.text_of(message)
        found.tokens += LINK.findall(body) + MANAGE.findall(body)
    found.receipts = [receipt for receipt in receipts if receipt]
    db.rollback()
    found.hashes = [s.email_hash for s in db.exec(select(Signature))]
    found.hashes += [p.email_hash for p in db.exec(select(PendingSignature))]
    found.hashes += [p.nonce_hash for p in db.exec(select(PendingSignature))]
    found.hashes += [m.nonce_hash for m in db.exec(select(ManageLink))]
    assert len(found.tokens) >= 11 and len(found.receipts) >= 6
    return found


def fill(path: str, token: str) -> str:
    values = {"slug": "test-letter", "token": token, "language": "en"}
    return PARAM.sub(lambda match: values.get(match.group(1), "1"), path)


def public_gets(app: Any, used_tokens: list[str]) -> list[str]:
    """Every GET address of the app, with its parameters filled in (and some variants)."""
    paths: list[str] = []
    for route in app.routes:
        if isinstance(route, Mount):
            continue
        assert isinstance(route, Route), route
        if route.methods is not None and "GET" not in route.methods:
            continue
        if route.path == "/api/letters/{slug}/events":
            continue  # a stream of several minutes; read briefly against a real server
        # Used signer links are what a mailbox's reader may open later; other tokens
        # (authors' sign-in links) get a made-up one.
        signer_link = route.path in ("/verify/{token}", "/manage/{token}")
        tokens = used_tokens if signer_link else [""]
        paths += [fill(route.path, token or "not-a-token") for token in tokens]
    paths += [
        "/api/letters/test-letter/signatures?limit=500",
        "/api/letters/test-letter/ledger?after=0",
        "/static/css/site.css",
    ]
    return paths


def error_pages(client) -> dict[str, Any]:
    """Answers for bad input of every kind; none may carry anyone's details."""
    big = {"email": "x@microsoft.com", "pad": "a" * 70_000}
    answers = {
        "404 page": client.get("/en/letters/no-such-letter"),
        "404 path": client.get("/no/such/page"),
        "404 api": client.get("/api/letters/no-such-letter"),
        "400 verify": client.get("/verify/garbage"),
        "400 manage": client.get("/manage/garbage"),
        "400 cursor": client.get("/letters/test-letter/signatures?after=bad"),
        "400 api token": client.post("/api/verify", json={"token": "garbage"}),
        "403 csrf": client.post("/letters/test-letter/sign", data={"email": "x@microsoft.com"}),
        "403 manage csrf": client.post("/letters/test-letter/manage", data={"email": "x@x.com"}),
        "405": client.get("/api/verify"),
        "413": client.post("/api/letters/test-letter/signatures", json=big),
        "415": client.post("/api/letters/test-letter/signatures", content=b"x"),
        "422 domain": sign_api(client, "someone@evil.example"),
        "422 manage": client.post(
            "/letters/test-letter/manage",
            data={"csrftoken": letter_csrf(client), "email": "x"},
        ),
    }
    for _ in range(6):
        flood = sign_api(client, "flood.test@microsoft.com")
    answers["429"] = flood
    assert answers["429"].status_code == 429
    for key, response in answers.items():
        assert response.status_code == int(key[:3]), (key, response.status_code)
    return answers


def used_tokens(client, tokens: list[str]) -> list[str]:
    """The links already used: what anyone reading the mailbox later could open."""
    # Not this browser's own reload of a page it confirmed (letters.web.verify).
    client.cookies.delete("confirmed")
    used = [
        token
        for token in tokens
        if any(
            "already been used" in client.get(f"/{kind}/{token}").text
            for kind in ("verify", "manage")
        )
    ]
    assert len(used) >= 9
    return used


def as_text(response: Any) -> str:
    headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
    return headers + "\n" + response.text


def test_no_public_page_error_page_or_log_line_identifies_a_signer(
    app, client, letter, mailbox, db, caplog
):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="letters")
    population = populate(client, mailbox, db)
    secrets = population.secrets()

    used = used_tokens(client, population.tokens)
    pages = {path: client.get(path, follow_redirects=False) for path in public_gets(app, used)}
    letter_page = pages["/en/letters/test-letter"].text
    assert all(shown in letter_page for shown in SHOWN)  # the search does see names
    assert "1 name from GitHub will be shown" in letter_page
    assert "1 name from Example Corp will be shown" in letter_page
    for path, response in pages.items():
        assert response.status_code < 500, path
        assert find_secrets(as_text(response), secrets) == [], path
    for name, response in error_pages(client).items():
        assert find_secrets(as_text(response), secrets) == [], name

    # Everything the app and its libraries logged; not the test's own SMTP server (which
    # stands for the mail server and must see the address) nor its HTTP client.
    ours = [r for r in caplog.records if not r.name.startswith(TEST_SIDE_LOGGERS)]
    assert ours, "nothing was logged at all"
    logged = "\n".join(f"{r.name} {r.getMessage()} {r.args!r} {r.exc_text}" for r in ours)
    assert find_secrets(logged, secrets) == []


def test_the_database_keeps_no_address_or_link_once_the_email_is_sent(
    client, letter, mailbox, db, engine, settings
):
    population = populate(client, mailbox, db)
    deadline = time.monotonic() + 10
    while db.exec(select(OutboxMessage)).first() is not None:
        assert time.monotonic() < deadline, "the outbox was not emptied"
        time.sleep(0.05)
        db.rollback()
    db.rollback()  # hold no read snapshot: a checkpoint waits for none
    # What each sender does every few seconds (and `letters purge`): on SQLite, it also
    # empties the write-ahead log, which still held the outbox pages as first written.
    purge(settings)
    secrets = population.emails + population.tokens
    dump = []
    with engine.connect() as connection:
        for name in inspect(connection).get_table_names():
            table = Table(name, MetaData(), autoload_with=connection)
            for row in connection.execute(sa_select(table)):
                dump.append(f"{name}: " + " | ".join(str(value) for value in row))
    # Names never shown (hidden, waiting for a threshold, or never confirmed) are kept
    # sealed: the signer may show them later, and nobody else may read them.
    never_shown = [
        text_
        for email in NEVER_SHOWN
        for text_ in (*HIDDEN_SIGNERS[email], *HIDDEN_SIGNERS[email][0].split())
    ]
    assert find_secrets("\n".join(dump), secrets + never_shown) == []
    # The files themselves: on SQLite free pages and the write-ahead log included, on
    # PostgreSQL the tables' files with their row versions not yet vacuumed.
    assert find_secrets(raw_database(settings, engine), secrets + never_shown) == []


def test_a_real_server_logs_no_address_token_or_name(database_url, letter, mailbox, tmp_path):
    with (
        running_server(database_url, tmp_path, smtp_url=mailbox.url) as server,
        http_client(server.url) as client,
    ):
        population = populate(client, mailbox, _NoDb())
        secrets = population.secrets()
        app = create_app(make_settings(database_url))
        for path in public_gets(app, used_tokens(client, population.tokens)):
            response = client.get(path, follow_redirects=False)
            assert response.status_code < 500, path
            assert find_secrets(as_text(response), secrets) == [], path
        with client.stream("GET", "/api/letters/test-letter/events") as events:
            first = ""
            for line in events.iter_lines():
                first += line + "\n"
                if line.startswith("data:"):
                    break
        assert '"verified_count":' in first
        assert find_secrets(first, secrets) == []
        for name, response in error_pages(client).items():
            assert find_secrets(as_text(response), secrets) == [], name
    log = server.log()
    assert "GET /manage/[redacted]" in log and "POST /manage/[redacted]" in log
    assert find_secrets(log, secrets) == []
    assert "Traceback" not in log


class _NoDb:
    """The live server test reads no rows itself: hashes are not collected there."""

    def rollback(self) -> None:
        pass

    def exec(self, statement: Any) -> list[Any]:
        return []


@pytest.mark.parametrize(
    ("overrides", "sender", "subject"),
    [
        ({}, "Letters <no-reply@localhost>", "Confirm your email address"),
        (
            {"mail_from_name": "Notifications", "mail_subject": "Your code"},
            "Notifications <no-reply@localhost>",
            "Your code",
        ),
        ({"mail_from_name": ""}, "no-reply@localhost", "Confirm your email address"),
    ],
)
def test_what_the_mailbox_owner_sees_is_configurable_and_neutral(
    database_url, mailbox, tmp_path, letter, overrides, sender, subject
):
    settings = make_settings(
        database_url, smtp_url=mailbox.url, instance_path=tmp_path, **overrides
    )
    with TestClient(create_app(settings)) as client:
        assert sign_api(client, "ada@microsoft.com").status_code == 202
        mailbox.wait_for(1)
        message = mailbox.messages[0]
        assert message["From"] == sender
        assert message["Subject"] == subject
        body = mailbox.text_of(message)
        for word in ("Test letter", "test-letter", "letter", "sign", "petition"):
            assert word.lower() not in body.lower()
        assert confirm_api(client, mailbox.last_token()).status_code == 200
        client.post(
            "/letters/test-letter/manage",
            data={
                "csrftoken": letter_csrf(client),
                "email": "ada@microsoft.com",
            },
        )
        mailbox.wait_for(2)
        assert mailbox.messages[1]["From"] == sender
        assert mailbox.messages[1]["Subject"] == settings.mail_manage_subject


@pytest.mark.parametrize(
    "values",
    [
        {"mail_subject": "Hi\r\nBcc: everyone@example.com"},
        {"mail_manage_subject": "a\nb"},
        {"mail_from_name": "x\r\ny"},
        {"mail_subject": ""},
    ],
)
def test_mail_settings_refuse_header_injection(values):
    with pytest.raises(ValueError):
        Settings(_env_file=None, secret_key="k" * 40, **values)


def test_the_signing_form_explains_what_the_employer_can_see(client, letter):
    page = client.get("/letters/test-letter").text
    assert "Your employer may be able to read email sent to your work address." in page
    assert "personal device on mobile data" in page
    assert "delete the email" in page
    assert 'id="employer-hint"' in page


def test_the_manage_request_form_is_labelled(client, letter):
    for path in ("/letters/test-letter", "/letters/test-letter/manage"):
        page = client.get(path).text
        assert '<label for="manage_email">' in page
        assert 'id="manage_email"' in page


def raw_database(settings: Settings, engine: Any) -> str:
    """Everything on disk: on SQLite the database file and its write-ahead log, free pages
    included; on PostgreSQL every row, then every table's and index's file as written at a
    checkpoint, dead row versions (not yet vacuumed) included, and the latest segments of
    the write-ahead log."""
    if not ON_POSTGRES:
        path = Path(settings.database_url.removeprefix("sqlite:///"))
        files = (path, path.with_name(path.name + "-wal"))
        return "\n".join(f.read_bytes().decode("latin-1") for f in files if f.exists())
    dump = []
    with engine.connect() as connection:
        connection.exec_driver_sql("CHECKPOINT")
        for name in inspect(connection).get_table_names():
            table = Table(name, MetaData(), autoload_with=connection)
            for row in connection.execute(sa_select(table)):
                dump.append(" | ".join(str(value) for value in row))
        relations = connection.exec_driver_sql(
            "SELECT pg_relation_filepath(c.oid) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'i', 't')"
        ).scalars()
        # The write-ahead log's latest segments: every row as first written, and the pages
        # it replaced (what archives and base backups keep).
        segments = connection.exec_driver_sql(
            "SELECT 'pg_wal/' || name FROM pg_ls_waldir() ORDER BY modification DESC, name DESC"
            " LIMIT 2"
        ).scalars()
        for path in [*relations, *segments]:
            if path:
                raw = connection.exec_driver_sql(
                    "SELECT pg_read_binary_file(%(path)s)", {"path": path}
                ).scalar_one()
                dump.append(bytes(raw).decode("latin-1"))
    return "\n".join(dump)


def test_no_address_link_or_hidden_name_is_readable_on_disk_while_emails_wait_or_after(
    settings, letter, mailbox, engine, db
):
    from letters.mail import outbox

    settings.mail_in_app = False  # the emails wait in the outbox until drained below
    emails = [f"disk.reader.{n}@microsoft.com" for n in range(3)]
    with TestClient(create_app(settings)) as client:
        for email in emails:
            assert sign_api(client, email, name="Quietly Disked", show_name="0").status_code == 202
        # Waiting: the addresses and links are in the queued emails, sealed.
        assert len(db.exec(select(OutboxMessage)).all()) == 3
        raw = raw_database(settings, engine)
        assert "microsoft.com" in raw  # the scan does read the rows (the domain is kept)
        assert find_secrets(raw, [*emails, "Disked"]) == []
        state = client.app.state
        client.portal.call(outbox.drain, state.writer, state.mail, settings.keys)
        mailbox.wait_for(3)
        tokens = [mailbox.last_token(to=email) for email in emails]
        for token in tokens:
            assert confirm_api(client, token).status_code == 200
    # Sent, deleted and confirmed: what the rows held as first written is still in the
    # files (the write-ahead log, dead row versions), and shows nothing.
    hidden_name = ["Quietly Disked", "Disked"]
    assert find_secrets(raw_database(settings, engine), emails + tokens + hidden_name) == []
