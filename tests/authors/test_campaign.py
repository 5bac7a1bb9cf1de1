"""Delivering a letter with proof, and publishing the answer: by email from the delivery
sender (never the one that sends signing links), or recorded as delivered in person."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from email.utils import parseaddr
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlmodel import select
from starlette.testclient import TestClient

from letters.app import create_app
from letters.checker import Sources, check, print_report
from letters.models import AuditEntry, Delivery, LedgerEntry, OutboxMessage, utcnow
from letters.record import ledger
from tests.authors.helpers import create_draft, letter_row, post_form, publish, sign, sign_in_as
from tests.conftest import Mailbox, free_port, make_settings
from tests.helpers import assert_consistent

SLUG = "drop-the-contract"
PAGE = f"/authors/letters/{SLUG}/delivery"
DELIVERY_FROM = "deliveries@campaign.example"
EMAIL = {
    "recipient": "Satya Nadella, CEO",
    "method": "email",
    "to": "ceo@microsoft.com",
    "from_name": "Microsoft employees for the letter",
    "reply_to": "organizers@example.org",
}


@pytest.fixture
def delivery_box() -> Any:
    """A second SMTP server: where deliveries go (DELIVERY_SMTP_URL)."""
    box = Mailbox(host="127.0.0.1", port=free_port())
    controller = Controller(box, hostname=box.host, port=box.port)
    controller.start()
    yield box
    controller.stop()


@pytest.fixture
def settings(database_url, mailbox, delivery_box, tmp_path):
    return make_settings(
        database_url,
        smtp_url=mailbox.url,
        instance_path=tmp_path,
        delivery_from=DELIVERY_FROM,
        delivery_smtp_url=delivery_box.url,
    )


@pytest.fixture
def signed(client, engine, mailbox):
    """A published letter, signed by one named and one hidden employee."""
    sign_in_as(client, engine, "ada@example.org")
    create_draft(client)
    publish(client, SLUG)
    sign(client, mailbox, "grace@github.com", SLUG, name="Grace Hopper", show_name=True)
    sign(client, mailbox, "secret@microsoft.com", SLUG, name="Secret Person", title="Spy")
    return client


def deliver(client: TestClient, **fields: str) -> Any:
    return post_form(client, PAGE, fields, page=PAGE)


def ledger_lines(client: TestClient) -> list[dict[str, Any]]:
    response = client.get(f"/api/letters/{SLUG}/ledger")
    return [json.loads(line) for line in response.text.splitlines()]


def test_a_delivery_by_email_goes_from_the_delivery_sender_with_proof(
    signed, db, mailbox, delivery_box, settings, tmp_path, capsys
):
    site_mail = len(mailbox.messages)
    response = deliver(signed, **EMAIL)
    assert response.status_code == 303, response.text
    delivery_box.wait_for(1)
    message = delivery_box.messages[0]

    # From the delivery sender with the authors' display name, answers to the authors.
    name, address = parseaddr(message["From"])
    assert (name, address) == (EMAIL["from_name"], DELIVERY_FROM)
    assert message["Reply-To"] == EMAIL["reply_to"]
    assert message["To"] == EMAIL["to"]
    assert delivery_box.envelopes[0] == (DELIVERY_FROM, [EMAIL["to"]])
    # ...and through its own server: the site's never saw it, nor did its sender send it.
    assert len(mailbox.messages) == site_mail
    assert all(DELIVERY_FROM not in str(m["From"]) for m in mailbox.messages)
    assert all(parseaddr(m["From"])[1] == "no-reply@localhost" for m in mailbox.messages)

    # The text, the counts by organization, the public names; never a hidden name.
    text = delivery_box.text_of(message)
    assert "drop the contract" in text
    assert "2 verified signatures as of" in text
    assert "GitHub: 1" in text and "Microsoft: 1" in text
    assert "Grace Hopper" in text
    assert "1 verified employee chose not to show their name" in text
    assert f"http://testserver/api/letters/{SLUG}/ledger" in text
    raw = message.as_string()
    assert "Secret Person" not in raw and "Spy" not in raw and "secret@" not in raw

    # The snapshot attached is the one served, and its SHA-256 is in the ledger.
    files = {part.get_filename(): part for part in message.iter_attachments()}
    assert set(files) == {"letter-snapshot.jws", "signed-by-name.csv"}
    assert files["letter-snapshot.jws"].get_content_type() == "application/jose"
    token = files["letter-snapshot.jws"].get_content()
    token = token.decode() if isinstance(token, bytes) else token
    entries = ledger_lines(signed)
    delivered = entries[-1]
    assert delivered["kind"] == "delivered" and delivered["v"] == 2
    assert delivered["digest"] == hashlib.sha256(token.encode()).hexdigest()
    assert delivered["organization"] == "" and delivered["commitment"] == ""
    assert all("v" not in entry for entry in entries[:-1])  # signatures stay v1
    served = signed.get(f"/api/letters/{SLUG}/deliveries/{delivered['seq']}/snapshot")
    assert served.status_code == 200 and served.headers["content-type"] == "application/jose"
    assert served.text == token
    csv_text = files["signed-by-name.csv"].get_content()
    assert "Grace Hopper" in str(csv_text) and "Secret" not in str(csv_text)

    # The snapshot signed the ledger just before the delivery, which verify-ledger checks.
    (tmp_path / "ledger.jsonl").write_text("".join(json.dumps(entry) + "\n" for entry in entries))
    (tmp_path / "snapshot.jws").write_text(token)
    (tmp_path / "jwks.json").write_text(signed.get("/.well-known/jwks.json").text)
    sources = Sources(
        str(tmp_path / "ledger.jsonl"), str(tmp_path / "snapshot.jws"), str(tmp_path / "jwks.json")
    )
    report = check(sources)
    assert report.delivered_at == delivered["seq"]
    assert report.snapshot is not None and report.snapshot["verified_count"] == 2
    print_report(report, capsys_out := __import__("io").StringIO())
    printed = capsys_out.getvalue()
    assert "Formats: v1 for entries 1-2, v2 for entry 3" in printed
    assert "Entry 3: delivered on" in printed
    assert "This snapshot is the one delivered with entry 3" in printed

    # Public: the letter and tally pages, the JSON; private: the audit log.
    page = signed.get(f"/letters/{SLUG}").text
    today = utcnow().date()
    assert "Delivered to Satya Nadella, CEO on" in page
    assert "with 2 verified signatures" in page
    assert EMAIL["to"] not in page and EMAIL["reply_to"] not in page
    assert "Delivered to Satya Nadella, CEO" in signed.get(f"/letters/{SLUG}/tally").text
    listed = signed.get(f"/api/letters/{SLUG}/deliveries").json()["deliveries"]
    assert listed[0]["recipient"] == EMAIL["recipient"]
    assert listed[0]["delivered_on"] == today.isoformat()
    assert listed[0]["state"] == "sent" and listed[0]["ledger_seq"] == 3
    assert EMAIL["to"] not in json.dumps(listed)
    audit = signed.get(f"/authors/letters/{SLUG}/audit").text
    assert "Delivered the letter" in audit and "by email to ceo@microsoft.com" in audit
    assert_consistent(db, SLUG)
    db.rollback()
    row = db.exec(select(Delivery)).one()
    assert row.sent_at is not None and row.failed_at is None
    assert db.exec(select(OutboxMessage)).all() == []  # the recipient's address is gone too


def test_a_delivery_in_person_records_the_day_and_version(signed, db, delivery_box):
    yesterday = (utcnow() - timedelta(days=1)).date()
    letter = letter_row(db, SLUG)
    # Published today by the fixture: yesterday is before it.
    refused = deliver(
        signed, recipient="The board", method="other", delivered_on=yesterday.isoformat()
    )
    assert refused.status_code == 422
    assert "publication" in refused.text
    today = utcnow().date().isoformat()
    response = deliver(signed, recipient="The board", method="other", delivered_on=today)
    assert response.status_code == 303
    assert delivery_box.messages == []
    entries = ledger_lines(signed)
    assert [entry["kind"] for entry in entries] == ["signed", "signed", "delivered"]
    db.rollback()
    row = db.exec(select(Delivery)).one()
    assert (row.method, row.delivered_on, row.letter_version) == ("other", today, letter.version)
    assert row.address == "" and row.verified_count == 2
    page = signed.get(f"/letters/{SLUG}/history").text
    assert f'id="delivery-{row.ledger_seq}"' in page
    assert "Delivered in person or by other means" in page
    assert_consistent(db, SLUG)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({**EMAIL, "recipient": ""}, "recipient"),
        ({**EMAIL, "method": "fax"}, "method"),
        ({**EMAIL, "to": "not an address"}, "to"),
        ({**EMAIL, "reply_to": ""}, "reply_to"),
        ({**EMAIL, "from_name": "ceo@microsoft.com"}, "from_name"),
        ({**EMAIL, "from_name": "A\nB <x@y.z>"}, "from_name"),
        ({**EMAIL, "version": "99"}, "version"),
        (
            {"recipient": "The board", "method": "other", "delivered_on": "2999-01-01"},
            "delivered_on",
        ),
        (
            {"recipient": "The board", "method": "other", "delivered_on": "yesterday"},
            "delivered_on",
        ),
        ({**EMAIL, "recipient": "x" * 201}, "recipient"),
    ],
)
def test_a_bad_delivery_form_is_refused_and_changes_nothing(
    signed, db, delivery_box, fields, field
):
    before = letter_row(db, SLUG).ledger_length
    response = deliver(signed, **fields)
    assert response.status_code == 422
    assert f'id="{field}-error"' in response.text
    assert letter_row(db, SLUG).ledger_length == before
    assert db.exec(select(Delivery)).all() == []
    assert delivery_box.messages == []


def test_without_delivery_from_there_is_no_delivery_by_email(
    database_url, mailbox, tmp_path, engine, db
):
    settings = make_settings(database_url, smtp_url=mailbox.url, instance_path=tmp_path)
    with TestClient(create_app(settings)) as client:
        sign_in_as(client, engine, "ada@example.org")
        create_draft(client)
        publish(client, SLUG)
        assert "not set up to send deliveries by email" in client.get(PAGE).text
        response = deliver(client, **EMAIL)
        assert response.status_code == 422
        assert "DELIVERY_FROM" in response.text
        assert letter_row(db, SLUG).ledger_length == 0
        # Recording one made by other means still works.
        today = utcnow().date().isoformat()
        ok = deliver(client, recipient="The board", method="other", delivered_on=today)
        assert ok.status_code == 303


def test_only_the_letters_authors_deliver_and_only_once_published(client, engine, db):
    sign_in_as(client, engine, "ada@example.org")
    create_draft(client)
    today = utcnow().date().isoformat()
    other = {"recipient": "The board", "method": "other", "delivered_on": today}
    assert deliver(client, **other).status_code == 403  # a draft
    publish(client, SLUG)
    sign_in_as(client, engine, "stranger@example.org")
    assert client.get(PAGE).status_code == 404
    assert post_form(client, PAGE, other).status_code == 404
    client.cookies.clear()
    assert client.get(PAGE, follow_redirects=False).status_code == 303
    assert db.exec(select(Delivery)).all() == []


def test_a_coauthor_may_deliver(client, engine, db):
    sign_in_as(client, engine, "ada@example.org")
    create_draft(client)
    publish(client, SLUG)
    invited = post_form(
        client,
        f"/authors/letters/{SLUG}/authors",
        {"email": "bob@example.org"},
        page=f"/authors/letters/{SLUG}/authors",
    )
    assert invited.status_code == 200
    sign_in_as(client, engine, "bob@example.org", can_create=False)
    today = utcnow().date().isoformat()
    response = deliver(client, recipient="The board", method="other", delivered_on=today)
    assert response.status_code == 303
    db.rollback()
    entry = db.exec(select(AuditEntry).where(AuditEntry.action == "delivered")).one()
    assert entry.author_email == "bob@example.org"


def test_a_reply_and_an_outcome_are_published_on_the_letter_and_its_history(signed, db):
    today = utcnow().date().isoformat()
    follow = f"/authors/letters/{SLUG}/follow-up"
    reply = {
        "kind": "reply",
        "happened_on": today,
        "source": "Satya Nadella, CEO",
        "text": "We **hear** you. <script>alert(1)</script>",
    }
    assert post_form(signed, follow, reply, page=PAGE).status_code == 303
    outcome = {"kind": "outcome", "happened_on": today, "text": "The contract was dropped."}
    assert post_form(signed, follow, outcome, page=PAGE).status_code == 303
    bad = post_form(signed, follow, {"kind": "reply", "happened_on": today, "text": ""}, page=PAGE)
    assert bad.status_code == 422
    page = signed.get(f"/letters/{SLUG}").text
    assert "Reply from Satya Nadella, CEO" in page and "<strong>hear</strong>" in page
    assert "<script>alert" not in page
    assert "The contract was dropped." in page
    history = signed.get(f"/letters/{SLUG}/history").text
    assert "Reply from Satya Nadella, CEO" in history and "Outcome" in history
    audit = signed.get(f"/authors/letters/{SLUG}/audit").text
    assert "Published the recipient" in audit and "Published an outcome" in audit
    follow_ups = signed.get(f"/api/letters/{SLUG}/deliveries").json()["follow_ups"]
    assert [item["kind"] for item in follow_ups] == ["reply", "outcome"]


def test_a_delivery_that_the_mail_server_never_takes_is_marked_failed(signed, db, settings):
    from letters.mail import outbox
    from letters.mail.backend import MailError

    class Refusing:
        async def send(self, message: Any) -> None:
            raise MailError("550 refused")

    signed.app.state.mail = Refusing()
    response = deliver(signed, **EMAIL)
    assert response.status_code == 303
    db.rollback()
    message = db.exec(select(OutboxMessage)).one()
    message.attempts = outbox.MAX_ATTEMPTS - 1
    message.next_attempt_at = utcnow()
    message.locked_until = None
    db.add(message)
    db.commit()
    signed.portal.call(
        outbox.drain, signed.app.state.writer, Refusing(), signed.app.state.settings.keys
    )
    db.rollback()
    row = db.exec(select(Delivery)).one()
    assert row.failed_at is not None and row.sent_at is None
    assert db.exec(select(OutboxMessage)).all() == []
    assert "refused it" in signed.get(f"/letters/{SLUG}/history").text
    entries = db.exec(select(LedgerEntry).order_by(LedgerEntry.seq)).all()
    assert ledger.verify(ledger.public_entry(e) for e in entries).verified == 2


def test_the_deliveries_json_matches_its_openapi_description(signed):
    today = utcnow().date().isoformat()
    assert deliver(signed, **EMAIL).status_code == 303
    follow = {"kind": "outcome", "happened_on": today, "text": "Dropped."}
    assert (
        post_form(signed, f"/authors/letters/{SLUG}/follow-up", follow, page=PAGE).status_code
        == 303
    )
    schema = signed.get("/api/openapi.json").json()["components"]["schemas"]["Deliveries"]
    answer = signed.get(f"/api/letters/{SLUG}/deliveries").json()
    assert set(answer) == set(schema["required"])
    for name in ("deliveries", "follow_ups"):
        items = schema["properties"][name]["items"]
        assert answer[name] and all(set(item) == set(items["required"]) for item in answer[name])
    entries = ledger_lines(signed)
    kinds = signed.get("/api/openapi.json").json()["components"]["schemas"]["LedgerEntry"]
    assert {entry["kind"] for entry in entries} <= set(kinds["properties"]["kind"]["enum"])
