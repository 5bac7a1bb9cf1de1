"""The signing flow through the JSON API, with mail through a real SMTP server."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import select

from letters.models import PendingSignature, Signature, utcnow
from tests.helpers import assert_consistent, confirm_api, counts, pending_count, sign_api


def test_sign_sends_a_link_and_counts_only_after_confirmation(client, letter, mailbox, db):
    response = sign_api(client, "Ada.Lovelace@Microsoft.com", name="Ada Lovelace", show_name=True)
    assert response.status_code == 202
    assert response.json() == {"status": "check_your_email"}

    mailbox.wait_for(1)
    message = mailbox.messages[0]
    assert message["To"] == "ada.lovelace@microsoft.com"
    assert message["Subject"] == "Confirm your email address"
    assert "Test letter" not in mailbox.text_of(message)  # neutral: the letter is not named
    assert counts(db)["verified"] == 0  # pending never counts

    token = mailbox.last_token()
    assert client.get(f"/verify/{token}").status_code == 200
    assert counts(db)["verified"] == 0  # a GET (mail scanner) confirms nothing

    response = confirm_api(client, token)
    assert response.status_code == 200
    body = response.json()
    receipt = body.pop("receipt")
    assert body == {"status": "verified", "outcome": "verified", "letter": "test-letter"}
    assert len(receipt) >= 20
    c = assert_consistent(db)
    assert (c["verified"], c["named"], c["hidden"]) == (1, 1, 0)
    assert c["orgs"] == {"Microsoft": 1}


def test_hidden_is_the_default_and_the_name_is_optional(client, letter, mailbox, db):
    assert sign_api(client, "someone@github.com").status_code == 202
    assert confirm_api(client, mailbox.last_token()).status_code == 200
    c = assert_consistent(db)
    assert (c["verified"], c["named"], c["hidden"]) == (1, 0, 1)
    assert c["orgs"] == {"GitHub": 1}


def test_a_shown_name_is_required(client, letter, mailbox):
    response = sign_api(client, "a@github.com", name="  ", show_name=True)
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "name"
    assert mailbox.messages == []


def test_a_link_works_once(client, letter, mailbox, db):
    sign_api(client, "once@microsoft.com")
    token = mailbox.last_token()
    assert confirm_api(client, token).status_code == 200
    again = confirm_api(client, token)
    assert again.status_code == 400
    assert again.json()["error"]["code"] == "invalid_token"
    assert counts(db)["verified"] == 1


def test_tampered_and_garbage_tokens_are_refused(client, letter, mailbox, db):
    sign_api(client, "t@microsoft.com")
    token = mailbox.last_token()
    for bad in [
        token[:-2] + ("AA" if not token.endswith("AA") else "BB"),
        "x",
        "a.b.c",
        token + "x",
    ]:
        response = confirm_api(client, bad)
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "invalid_token"
    assert counts(db)["verified"] == 0


def test_a_token_signed_with_another_key_is_refused(client, letter, mailbox):
    from letters.record import links
    from letters.tokens import Signer

    forged = links.make(Signer("another-secret-key-000000000000000000"), links.SIGNER, 1, "nonce")
    response = confirm_api(client, forged)
    assert response.json()["error"]["code"] == "invalid_token"


def test_a_link_for_one_pending_signature_cannot_confirm_another(client, letter, mailbox, db):
    from letters.record import links
    from letters.tokens import Signer
    from tests.conftest import SECRET

    sign_api(client, "first@microsoft.com")
    sign_api(client, "second@microsoft.com")
    mailbox.wait_for(2)
    # Swap the ids: right key, wrong nonce for that pending signature.
    token = mailbox.last_token("first@microsoft.com")
    pending_id, nonce = links.read(Signer(SECRET), links.SIGNER, token, 3600)
    other = db.exec(select(PendingSignature).where(PendingSignature.id != pending_id)).one()
    forged = links.make(Signer(SECRET), links.SIGNER, other.id, nonce)
    assert confirm_api(client, forged).json()["error"]["code"] == "invalid_token"
    assert counts(db)["verified"] == 0


def test_expired_links_are_refused(client, letter, mailbox, db):
    sign_api(client, "late@microsoft.com")
    token = mailbox.last_token()
    pending = db.exec(select(PendingSignature)).one()
    pending.expires_at = utcnow() - timedelta(seconds=1)
    db.add(pending)
    db.commit()
    response = confirm_api(client, token)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "expired_token"
    assert "expired" in client.get(f"/verify/{token}").text
    assert counts(db)["verified"] == 0


def test_the_signed_timestamp_also_expires_links(app, client, letter, mailbox, db):
    sign_api(client, "late2@microsoft.com")
    token = mailbox.last_token()
    app.state.settings.link_max_age = 1
    import time

    time.sleep(2.1)
    assert confirm_api(client, token).json()["error"]["code"] == "expired_token"


def test_one_person_one_signature_across_case_and_plus_tags(client, letter, mailbox, db):
    for address in ["Grace@microsoft.com", "grace+letters@MICROSOFT.com", "GRACE@microsoft.com"]:
        assert sign_api(client, address).status_code == 202
    mailbox.wait_for(3)
    # Each request got its own fresh link, sent to the address as typed (normalized).
    assert [m["To"] for m in mailbox.messages] == [
        "grace@microsoft.com",
        "grace+letters@microsoft.com",
        "grace@microsoft.com",
    ]
    for message in mailbox.messages:
        from tests.conftest import LINK

        token = LINK.search(mailbox.text_of(message)).group(1)
        assert confirm_api(client, token).status_code == 200
    c = assert_consistent(db)
    assert c["verified"] == 1


def test_signing_again_updates_details_without_a_second_count(client, letter, mailbox, db):
    sign_api(client, "lin@microsoft.com", name="Lin", show_name=True, title="SDE")
    confirm_api(client, mailbox.last_token())
    assert counts(db)["named"] == 1

    sign_api(client, "lin@microsoft.com", name="Lin", show_name=False)
    confirm_api(client, mailbox.last_token())
    c = assert_consistent(db)
    assert (c["verified"], c["named"], c["hidden"]) == (1, 0, 1)
    signature = db.exec(select(Signature)).one()
    assert signature.show_name is False


def test_the_response_does_not_reveal_whether_an_address_signed(client, letter, mailbox, db):
    first = sign_api(client, "enum@microsoft.com")
    confirm_api(client, mailbox.last_token())
    again = sign_api(client, "enum@microsoft.com")
    fresh = sign_api(client, "never@microsoft.com")
    for response in (again, fresh):
        assert response.status_code == first.status_code == 202
        assert response.content == first.content
        assert response.headers.get("set-cookie") == first.headers.get("set-cookie")


def test_no_plaintext_email_is_stored(client, letter, mailbox, db, engine):
    from sqlalchemy import text

    sign_api(client, "secret.person@microsoft.com", name="Hidden Person")
    confirm_api(client, mailbox.last_token())
    sign_api(client, "pending.person@github.com")
    mailbox.wait_for(2)
    with engine.connect() as connection:
        for table in ("signature", "pending_signature", "rate_limit_hit", "letter"):
            for row in connection.execute(text(f"SELECT * FROM {table}")):  # noqa: S608
                dump = " ".join(str(value) for value in row).lower()
                assert "secret.person" not in dump
                assert "pending.person" not in dump


def test_a_closed_letter_takes_no_signatures_and_no_confirmations(client, engine, mailbox, db):
    from tests.conftest import make_letter

    make_letter(engine, "test-letter")
    sign_api(client, "early@microsoft.com")
    token = mailbox.last_token()
    make_letter(engine, "test-letter", status="closed")
    response = sign_api(client, "late@microsoft.com")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "letter_closed"
    response = confirm_api(client, token)
    assert response.status_code == 409
    assert counts(db)["verified"] == 0
    assert client.get("/letters/test-letter").status_code == 200  # still public


def test_drafts_and_unknown_letters_are_404(client, engine, mailbox):
    from tests.conftest import make_letter

    make_letter(engine, "secret-draft", status="draft")
    for slug in ("secret-draft", "nope"):
        response = sign_api(client, "x@microsoft.com", slug=slug)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
        assert client.get(f"/api/letters/{slug}").status_code == 404
        assert client.get(f"/letters/{slug}").status_code == 404
    assert mailbox.messages == []


def test_refused_domains_get_a_clear_422_and_no_email(client, letter, mailbox, db):
    for address in [
        "a@microsoft.com.evil.com",
        "a@evilmicrosoft.com",
        "a@m\u0456crosoft.com",  # Cyrillic i
        '"a@microsoft.com"@evil.com',
        "a@microsoft.com.",
        "a@sub.microsoft.com",  # subdomains not allowed for microsoft.com here
        "a@gmail.com",
    ]:
        response = sign_api(client, address)
        assert response.status_code == 422, address
        error = response.json()["error"]
        assert error["field"] == "email"
        assert error["code"] in ("domain_not_allowed", "invalid_email")
        assert error["message"]
    assert mailbox.messages == []
    assert pending_count(db) == 0


def test_subdomains_count_where_the_letter_allows_them(client, letter, mailbox, db):
    assert sign_api(client, "a@eu.corp.example").status_code == 202
    assert sign_api(client, "b@corp.example").status_code == 202
    mailbox.wait_for(2)
    assert sign_api(client, "c@notcorp.example").status_code == 422


def test_an_smtp_outage_delays_mail_but_never_fails_a_sign_request(
    app, client, letter, mailbox, db
):
    import asyncio

    from letters.mail.backend import make_backend
    from letters.models import OutboxMessage

    working = app.state.mail
    app.state.mail = make_backend(
        app.state.settings.model_copy(update={"smtp_url": "smtp://127.0.0.1:1"})
    )
    response = sign_api(client, "patient@microsoft.com")
    assert response.status_code == 202
    db.rollback()
    queued = db.exec(select(OutboxMessage)).one()
    assert queued.attempts == 1 and queued.last_error and "patient" not in queued.last_error
    assert mailbox.messages == []

    # The server is back; the retry is due (pretend the backoff has passed).
    queued.next_attempt_at = utcnow()
    db.add(queued)
    db.commit()
    result = asyncio.run(_drain(app.state.settings, working))
    assert result.sent == 1
    assert mailbox.messages[0]["To"] == "patient@microsoft.com"
    db.rollback()
    assert db.exec(select(OutboxMessage)).all() == []  # the address is gone with the message
    assert confirm_api(client, mailbox.last_token()).status_code == 200


async def _drain(settings, backend):
    from letters.db import make_async_engine, make_sessionmaker, writer
    from letters.mail import outbox

    engine = make_async_engine(settings)
    try:
        return await outbox.drain(make_sessionmaker(writer(engine)), backend, settings.keys)
    finally:
        await engine.dispose()
