"""Signer control: ask for a manage link, open it, change or withdraw a signature with it."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from typing import Any

from sqlmodel import select

from letters.db import make_async_engine, make_sessionmaker, writer
from letters.forms import Details
from letters.models import LedgerEntry, Letter, ManageLink, PendingSignature, Signature, utcnow
from letters.record import links
from letters.record import signer_control as manage
from letters.tokens import Signer
from tests.conftest import SECRET, make_letter, make_settings
from tests.helpers import (
    assert_consistent,
    confirm_api,
    counts,
    csrf_from,
    letter_csrf,
    names_of,
    sign_api,
)

MANAGE = re.compile(r"/manage/([A-Za-z0-9_\-.]+)")


def signed(client, mailbox, email, **fields: Any) -> None:
    """Sign through the API and confirm through the emailed link."""
    before = len(mailbox.messages)
    assert sign_api(client, email, **fields).status_code == 202
    mailbox.wait_for(before + 1)
    assert confirm_api(client, mailbox.last_token(email.lower())).status_code == 200


def ask(client, email: str, slug: str = "test-letter", page_path: str = "") -> Any:
    """Ask for a manage link with the form on the letter page (or on `page_path`)."""
    token = csrf_from(client.get(page_path).text) if page_path else letter_csrf(client, slug)
    data = {"csrftoken": token, "email": email}
    return client.post(f"/letters/{slug}/manage", data=data, follow_redirects=False)


def manage_token(mailbox, to: str) -> str:
    for message in reversed(mailbox.messages):
        if message["To"] == to:
            match = MANAGE.search(mailbox.text_of(message))
            if match:
                return match.group(1)
    raise AssertionError(f"no manage email to {to}")


def link_for(client, mailbox, email: str) -> str:
    before = len(mailbox.messages)
    assert ask(client, email).status_code == 303
    mailbox.wait_for(before + 1)
    return manage_token(mailbox, email.lower())


def act(client, token: str, action: str, **fields: str) -> Any:
    page = client.get(f"/manage/{token}")
    assert page.status_code == 200, page.text
    data = {"csrftoken": csrf_from(page.text), "action": action, **fields}
    return client.post(f"/manage/{token}", data=data)


def entries(db, commitment: str) -> list[LedgerEntry]:
    db.rollback()
    return list(
        db.exec(
            select(LedgerEntry)
            .where(LedgerEntry.commitment == commitment)
            .order_by(LedgerEntry.seq)  # type: ignore[arg-type]
        ).all()
    )


def signature_of(db, name: str) -> Signature:
    db.rollback()
    [found] = [s for s in db.exec(select(Signature)).all() if names_of(s)[0] == name]
    return found


# --- asking for a link -------------------------------------------------------------------


def test_the_answer_is_the_same_whether_or_not_the_address_signed(client, letter, mailbox, db):
    signed(client, mailbox, "ada@microsoft.com", name="Ada Lovelace", show_name=True)
    mailbox.wait_for(1)
    for_signer = ask(client, "Ada@Microsoft.com")
    for_stranger = ask(client, "grace@microsoft.com")
    assert for_signer.status_code == for_stranger.status_code == 303
    assert for_signer.headers["location"] == for_stranger.headers["location"]
    sent = [client.get(r.headers["location"]) for r in (for_signer, for_stranger)]
    assert sent[0].status_code == sent[1].status_code == 200
    assert sent[0].text == sent[1].text
    mailbox.wait_for(2)
    assert [m["To"] for m in mailbox.messages] == ["ada@microsoft.com", "ada@microsoft.com"]
    db.rollback()
    assert len(db.exec(select(ManageLink)).all()) == 1


def test_the_manage_email_is_short_neutral_and_names_no_letter(client, letter, mailbox):
    signed(client, mailbox, "ada@microsoft.com", name="Ada Lovelace", show_name=True)
    link_for(client, mailbox, "ada@microsoft.com")
    message = mailbox.messages[-1]
    assert message["Subject"] == "Your requested link"
    text = mailbox.text_of(message)
    for word in ("Test letter", "test-letter", "letter", "sign", "Ada", "withdraw"):
        assert word.lower() not in text.lower(), word
    assert "http://testserver/manage/" in text
    assert len(text.split()) < 80


def test_a_plus_tag_or_case_finds_the_same_signature(client, letter, mailbox):
    signed(client, mailbox, "ada@microsoft.com")
    assert link_for(client, mailbox, "ADA+letters@microsoft.com")


def test_bad_addresses_are_refused_on_the_form_with_the_error_tied_to_the_field(
    client, letter, mailbox, db
):
    for email, message in [
        ("", "Enter your work email address."),
        ("not an address", "That is not a valid email address"),
        ("ada@evil.com", "evil.com"),
    ]:
        response = ask(client, email)
        assert response.status_code == 422, email
        assert message in response.text
        assert 'aria-invalid="true"' in response.text
        assert 'aria-describedby="manage_email-hint manage_email-error"' in response.text
    db.rollback()
    assert db.exec(select(ManageLink)).all() == []
    assert mailbox.messages == []


def test_unknown_and_draft_letters_are_404(client, engine, letter, mailbox):
    make_letter(engine, "a-draft", status="draft")
    token = letter_csrf(client)
    for slug in ("no-such-letter", "a-draft"):
        response = client.post(
            f"/letters/{slug}/manage", data={"csrftoken": token, "email": "a@microsoft.com"}
        )
        assert response.status_code == 404
        assert client.get(f"/letters/{slug}/manage").status_code == 404
        assert client.get(f"/letters/{slug}/manage/sent").status_code == 404


def test_asking_needs_the_csrf_token(client, letter, mailbox, db):
    signed(client, mailbox, "ada@microsoft.com")
    response = client.post("/letters/test-letter/manage", data={"email": "ada@microsoft.com"})
    assert response.status_code == 403
    db.rollback()
    assert db.exec(select(ManageLink)).all() == []


def test_manage_links_have_a_limit_of_their_own_per_letter(
    database_url, mailbox, tmp_path, engine, letter
):
    from starlette.testclient import TestClient

    from letters.app import create_app

    make_letter(engine, "other-letter")
    settings = make_settings(
        database_url, smtp_url=mailbox.url, instance_path=tmp_path, limit_per_address=2
    )
    with TestClient(create_app(settings)) as client:
        assert ask(client, "nobody@microsoft.com").status_code == 303
        assert ask(client, "Nobody+x@microsoft.com").status_code == 303
        limited = ask(client, "nobody@microsoft.com")
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) > 0
        # Spent on manage links of one letter: signing and the other letter are untouched.
        assert sign_api(client, "nobody@microsoft.com").status_code == 202
        assert ask(client, "nobody@microsoft.com", slug="other-letter").status_code == 303


def test_sign_requests_by_someone_else_never_lock_the_owner_out_of_their_manage_link(
    database_url, mailbox, tmp_path, engine, letter
):
    from starlette.testclient import TestClient

    from letters.app import create_app

    settings = make_settings(database_url, smtp_url=mailbox.url, instance_path=tmp_path)
    with TestClient(create_app(settings)) as client:
        signed(client, mailbox, "ada@microsoft.com")
        # Six hostile sign requests for Ada's address, in every spelling, from anywhere.
        answers = [
            sign_api(client, spelling).status_code
            for spelling in ["ada@microsoft.com", "ADA@microsoft.com", "ada+x@microsoft.com"] * 2
        ]
        assert answers == [202] * 4 + [429] * 2
        mailbox.wait_for(1 + 4)
        # Ada still gets her manage link.
        assert link_for(client, mailbox, "ada@microsoft.com")


def test_the_address_limit_is_per_letter(database_url, mailbox, tmp_path, engine, letter):
    from starlette.testclient import TestClient

    from letters.app import create_app

    for number in range(6):
        make_letter(engine, f"letter-{number}")
    settings = make_settings(database_url, smtp_url=mailbox.url, instance_path=tmp_path)
    with TestClient(create_app(settings)) as client:
        for number in range(6):  # a sixth letter in the hour is no different from the first
            response = client.post(
                f"/api/letters/letter-{number}/signatures",
                json={"email": "ada@microsoft.com"},
            )
            assert response.status_code == 202, response.text


# --- opening a link ----------------------------------------------------------------------


def test_opening_the_link_shows_the_signature_and_changes_nothing(client, letter, mailbox, db):
    signed(
        client, mailbox, "ada@microsoft.com", name="Ada Lovelace", title="Engineer", show_name=True
    )
    token = link_for(client, mailbox, "ada@microsoft.com")
    before = assert_consistent(db)
    for _ in range(3):
        page = client.get(f"/manage/{token}")
        assert page.status_code == 200
        assert client.head(f"/manage/{token}").status_code == 200
    assert "Ada Lovelace, Engineer · Microsoft" in page.text
    assert "Withdraw my signature" in page.text
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert assert_consistent(db) == before
    db.rollback()
    assert db.exec(select(ManageLink)).one().used_at is None


def test_bad_links_get_a_clear_page(client, letter, mailbox, db):
    signed(client, mailbox, "ada@microsoft.com")
    signing_token = mailbox.last_token("ada@microsoft.com")
    token = link_for(client, mailbox, "ada@microsoft.com")
    forged = Signer("another-secret-key-000000000000000000").timed(links.MANAGE.salt)
    for bad in [
        "x",
        token[:-2] + ("AA" if not token.endswith("AA") else "BB"),
        token + "x",
        signing_token,  # a signing link is not a manage link
        forged.dumps({"m": 1, "n": "x"}),
        Signer(SECRET).timed(links.MANAGE.salt).dumps({"m": 1, "n": "wrong nonce"}),
        Signer(SECRET).timed(links.MANAGE.salt).dumps({"m": True, "n": "x"}),
        Signer(SECRET).timed(links.MANAGE.salt).dumps(["m", 1]),
        "t\u00e9st",
    ]:
        page = client.get(f"/manage/{bad}")
        assert page.status_code == 400, bad
        assert "This link is not valid." in page.text
        csrf = letter_csrf(client)
        post = client.post(f"/manage/{bad}", data={"csrftoken": csrf, "action": "withdraw"})
        assert post.status_code == 400
    # and a manage link is not a signing link
    assert client.get(f"/verify/{token}").status_code == 400
    assert confirm_api(client, token).status_code == 400
    assert counts(db)["verified"] == 1


def test_an_expired_link_changes_nothing(client, letter, mailbox, db):
    signed(client, mailbox, "ada@microsoft.com")
    token = link_for(client, mailbox, "ada@microsoft.com")
    page = client.get(f"/manage/{token}")
    link = db.exec(select(ManageLink)).one()
    link.expires_at = utcnow() - timedelta(seconds=1)
    db.add(link)
    db.commit()
    for response in (
        client.get(f"/manage/{token}"),
        client.post(
            f"/manage/{token}", data={"csrftoken": csrf_from(page.text), "action": "withdraw"}
        ),
    ):
        assert response.status_code == 400
        assert "This link has expired." in response.text
        assert "Ask for a new one" in response.text
    assert counts(db)["verified"] == 1


def test_posting_without_csrf_or_with_a_bad_action_changes_nothing(client, letter, mailbox, db):
    signed(client, mailbox, "ada@microsoft.com")
    token = link_for(client, mailbox, "ada@microsoft.com")
    assert client.post(f"/manage/{token}", data={"action": "withdraw"}).status_code == 403
    csrf = csrf_from(client.get(f"/manage/{token}").text)
    for action in ("", "delete", "WITHDRAW", "x" * 100):
        response = client.post(f"/manage/{token}", data={"csrftoken": csrf, "action": action})
        assert response.status_code == 400
        assert "Choose what to do" in response.text
    response = client.post(
        f"/manage/{token}",
        content=b"\xff\xfe garbage",
        headers={"content-type": "multipart/form-data; boundary=x"},
    )
    assert response.status_code in (400, 403)
    assert counts(db)["verified"] == 1
    db.rollback()
    assert db.exec(select(ManageLink)).one().used_at is None


# --- withdrawing -------------------------------------------------------------------------


def test_withdraw_uncounts_redacts_and_records_it(client, letter, mailbox, db):
    signed(client, mailbox, "ada@microsoft.com", name="Ada Lovelace", show_name=True)
    signed(client, mailbox, "bob@microsoft.com")
    ada = signature_of(db, "Ada Lovelace")
    commitment, email_hash = ada.commitment, ada.email_hash
    assert sign_api(client, "ada@microsoft.com", name="Ada Lovelace").status_code == 202
    token = link_for(client, mailbox, "ada@microsoft.com")
    done = act(client, token, "withdraw")
    assert done.status_code == 200
    assert "Your signature is withdrawn" in done.text
    c = assert_consistent(db)
    assert (c["verified"], c["named"], c["hidden"], c["orgs"]) == (1, 0, 1, {"Microsoft": 1})
    history = entries(db, commitment)
    assert [e.kind for e in history] == ["signed", "withdrawn"]
    assert all(e.name == "" and e.title == "" for e in history)
    assert history[0].name_salt == ""  # the name can no longer be checked against the digest
    assert "Ada Lovelace" not in client.get("/letters/test-letter").text
    assert client.get("/api/letters/test-letter/signatures").json()["signatures"] == []
    db.rollback()
    # The pending re-signing link asked for before withdrawing is gone, with its name.
    pending = db.exec(select(PendingSignature)).all()
    assert [p for p in pending if p.email_hash == email_hash] == []
    assert len(pending) == 1  # bob's (ada's used one went too)


def test_a_used_link_says_only_that_it_was_used(client, letter, mailbox, db):
    signed(client, mailbox, "ada@microsoft.com", name="Ada Lovelace")
    token = link_for(client, mailbox, "ada@microsoft.com")
    page = client.get(f"/manage/{token}")
    assert (
        act(client, token, "update", show_name="0", name="Ada L", reveal_at="").status_code == 200
    )
    for again in (
        client.get(f"/manage/{token}"),
        client.post(
            f"/manage/{token}", data={"csrftoken": csrf_from(page.text), "action": "withdraw"}
        ),
    ):
        assert again.status_code == 400
        assert "already been used" in again.text
        for secret in ("Test letter", "Ada", "Microsoft"):
            assert secret not in again.text
    assert counts(db)["verified"] == 1


def test_withdrawing_an_already_withdrawn_signature_changes_nothing(client, letter, mailbox, db):
    signed(client, mailbox, "ada@microsoft.com")
    first = link_for(client, mailbox, "ada@microsoft.com")
    second = link_for(client, mailbox, "ada@microsoft.com")
    page = client.get(f"/manage/{second}")
    assert act(client, first, "withdraw").status_code == 200
    assert counts(db)["verified"] == 0
    response = client.post(
        f"/manage/{second}", data={"csrftoken": csrf_from(page.text), "action": "withdraw"}
    )
    assert response.status_code == 409
    assert "has been withdrawn or removed" in response.text
    assert client.get(f"/manage/{second}").status_code == 409
    c = assert_consistent(db)
    assert c["verified"] == 0
    db.rollback()
    assert len(db.exec(select(LedgerEntry)).all()) == 2


def test_a_link_made_before_a_withdrawal_does_not_manage_a_later_signature(
    client, letter, mailbox, db
):
    signed(client, mailbox, "ada@microsoft.com")
    old = link_for(client, mailbox, "ada@microsoft.com")
    assert (
        act(client, link_for(client, mailbox, "ada@microsoft.com"), "withdraw").status_code == 200
    )
    signed(client, mailbox, "ada@microsoft.com", name="Ada Again")
    assert client.get(f"/manage/{old}").status_code == 409
    assert counts(db)["verified"] == 1


def test_signing_again_after_withdrawing_counts_again(client, letter, mailbox, db):
    signed(client, mailbox, "ada@microsoft.com", name="Ada", show_name=True)
    assert (
        act(client, link_for(client, mailbox, "ada@microsoft.com"), "withdraw").status_code == 200
    )
    signed(client, mailbox, "ada@microsoft.com", name="Ada", show_name=True)
    c = assert_consistent(db)
    assert (c["verified"], c["named"]) == (1, 1)


def test_concurrent_withdrawals_count_once(settings, letter, mailbox, client, db):
    signed(client, mailbox, "ada@microsoft.com")
    tokens = [link_for(client, mailbox, "ada@microsoft.com") for _ in range(3)]

    async def race() -> list[str]:
        engine = make_async_engine(settings)
        maker = make_sessionmaker(writer(engine))
        signer = Signer(settings.secret_key)

        async def one(token: str) -> str:
            async with maker() as session:
                try:
                    await manage.apply(
                        session, token, manage.Action.withdraw, None, signer, settings
                    )
                except manage.SignatureGone:
                    return "gone"
                return "withdrawn"

        try:
            return list(await asyncio.gather(*(one(token) for token in tokens)))
        finally:
            await engine.dispose()

    outcomes = asyncio.run(race())
    assert sorted(outcomes) == ["gone", "gone", "withdrawn"]
    c = assert_consistent(db)
    assert c["verified"] == 0
    db.rollback()
    assert [e.kind for e in db.exec(select(LedgerEntry)).all()] == ["signed", "withdrawn"]


# --- changing ----------------------------------------------------------------------------


def test_named_to_hidden_moves_the_counts_and_blanks_the_name_in_the_ledger(
    client, letter, mailbox, db
):
    signed(
        client, mailbox, "ada@microsoft.com", name="Ada Lovelace", title="Engineer", show_name=True
    )
    commitment = signature_of(db, "Ada Lovelace").commitment
    token = link_for(client, mailbox, "ada@microsoft.com")
    done = act(client, token, "update", show_name="0", name="Ada Lovelace", title="Engineer")
    assert done.status_code == 200
    assert "a verified employee of Microsoft" in done.text
    c = assert_consistent(db)
    assert (c["verified"], c["named"], c["hidden"]) == (1, 0, 1)
    history = entries(db, commitment)
    assert [(e.kind, e.named, e.name) for e in history] == [
        ("signed", True, ""),
        ("changed", False, ""),
    ]
    for path in ("/letters/test-letter", "/api/letters/test-letter/signatures"):
        assert "Ada Lovelace" not in client.get(path).text
    # Kept, not public, so the signer can show it again later.
    assert signature_of(db, "Ada Lovelace").show_name is False


def test_hidden_to_named_and_a_new_title(client, letter, mailbox, db):
    signed(client, mailbox, "ada@microsoft.com", name="Ada Lovelace", title="Engineer")
    done = act(
        client,
        link_for(client, mailbox, "ada@microsoft.com"),
        "update",
        show_name="1",
        name="Ada King",
        title="Countess",
    )
    assert done.status_code == 200
    assert "<strong>Ada King</strong>, Countess" in done.text
    c = assert_consistent(db)
    assert (c["named"], c["hidden"]) == (1, 0)
    assert "Ada King" in client.get("/letters/test-letter").text
    # Now rename while shown: the old name is blanked, the new one chained.
    act(
        client,
        link_for(client, mailbox, "ada@microsoft.com"),
        "update",
        show_name="1",
        name="Ada Lovelace",
        title="Countess",
    )
    history = entries(db, signature_of(db, "Ada Lovelace").commitment)
    assert [(e.kind, e.name) for e in history] == [
        ("signed", ""),
        ("changed", ""),
        ("changed", "Ada Lovelace"),
    ]
    assert_consistent(db)


def test_hide_deletes_the_name_and_keeps_the_count(client, letter, mailbox, db):
    signed(
        client, mailbox, "ada@microsoft.com", name="Ada Lovelace", title="Engineer", show_name=True
    )
    done = act(client, link_for(client, mailbox, "ada@microsoft.com"), "hide")
    assert done.status_code == 200
    assert "deleted from our records" in done.text
    c = assert_consistent(db)
    assert (c["verified"], c["named"], c["hidden"]) == (1, 0, 1)
    db.rollback()
    signature = db.exec(select(Signature)).one()
    assert (signature.name, signature.title, signature.show_name) == ("", "", False)
    assert all(e.name == "" for e in db.exec(select(LedgerEntry)).all())


def test_a_change_that_changes_nothing_does_not_use_the_link(client, letter, mailbox, db):
    signed(client, mailbox, "ada@microsoft.com", name="Ada")
    token = link_for(client, mailbox, "ada@microsoft.com")
    response = act(client, token, "update", show_name="0", name="Ada", title="", reveal_at="")
    assert response.status_code == 200
    assert "Nothing changed" in response.text
    db.rollback()
    assert db.exec(select(ManageLink)).one().used_at is None


def test_bad_changes_are_refused_with_errors_tied_to_fields(client, letter, mailbox, db):
    signed(client, mailbox, "ada@microsoft.com", name="Ada", show_name=True)
    token = link_for(client, mailbox, "ada@microsoft.com")
    for fields, field in [
        ({"show_name": "1", "name": ""}, "name"),
        ({"show_name": "0", "name": "", "reveal_at": "10"}, "name"),
        ({"show_name": "0", "name": "Ada", "reveal_at": "7"}, "reveal_at"),
        ({"show_name": "maybe", "name": "Ada"}, "show_name"),
        ({"show_name": "1", "name": "Ada\u202e"}, "name"),
        ({"show_name": "1", "name": "Ada", "title": "x" * 200}, "title"),
    ]:
        response = act(client, token, "update", **fields)
        assert response.status_code == 422, fields
        assert f'href="#{field}"' in response.text
        if field != "show_name":
            assert f'aria-describedby="{field}-error"' in response.text or (
                f"{field}-error" in response.text
            )
    c = assert_consistent(db)
    assert (c["named"], c["hidden"]) == (1, 0)
    db.rollback()
    assert db.exec(select(ManageLink)).one().used_at is None


# --- closed letters ----------------------------------------------------------------------


def close(db) -> None:
    db.rollback()
    letter = db.exec(select(Letter)).one()
    letter.status = "closed"
    letter.closed_at = utcnow()
    db.add(letter)
    db.commit()


def test_a_closed_letter_refuses_changes_but_allows_withdrawing_and_hiding(
    client, letter, mailbox, db
):
    signed(client, mailbox, "ada@microsoft.com", name="Ada Lovelace", show_name=True)
    signed(client, mailbox, "bob@microsoft.com", name="Bob Named", show_name=True)
    ada = link_for(client, mailbox, "ada@microsoft.com")
    bob = link_for(client, mailbox, "bob@microsoft.com")
    close(db)
    assert "can still withdraw" in client.get("/letters/test-letter").text
    assert (
        "withdraw your signature or hide your name"
        in client.get("/letters/test-letter/manage").text
    )
    page = client.get(f"/manage/{ada}")
    assert page.status_code == 200
    assert "Save changes" not in page.text  # no change form on a closed letter
    refused = client.post(
        f"/manage/{ada}",
        data={
            "csrftoken": csrf_from(page.text),
            "action": "update",
            "show_name": "1",
            "name": "Someone Else",
        },
    )
    assert refused.status_code == 409
    assert "has closed" in refused.text
    assert "Someone Else" not in client.get("/letters/test-letter").text
    db.rollback()
    assert db.exec(select(ManageLink).where(ManageLink.used_at != None)).all() == []  # noqa: E711

    assert act(client, ada, "hide").status_code == 200
    assert act(client, bob, "withdraw").status_code == 200
    c = assert_consistent(db)
    assert (c["verified"], c["named"], c["hidden"]) == (1, 0, 1)
    assert "Ada Lovelace" not in client.get("/letters/test-letter").text
    # Asking for a link still works on a closed letter, from the page its letter links to.
    assert (
        ask(client, "ada@microsoft.com", page_path="/letters/test-letter/manage").status_code == 303
    )


def test_apply_refuses_an_update_without_details_cleanly(settings, letter, mailbox, client, db):
    signed(client, mailbox, "ada@microsoft.com")
    token = link_for(client, mailbox, "ada@microsoft.com")

    async def run() -> None:
        engine = make_async_engine(settings)
        try:
            async with make_sessionmaker(writer(engine))() as session:
                details = Details(name="Ada", title="", show_name=True)
                await manage.apply(
                    session,
                    token,
                    manage.Action.update,
                    details,
                    Signer(settings.secret_key),
                    settings,
                )
        finally:
            await engine.dispose()

    asyncio.run(run())
    c = assert_consistent(db)
    assert (c["named"], c["hidden"]) == (1, 0)


def test_the_manage_page_never_prints_a_hidden_name(client, letter, mailbox, db):
    signed(client, mailbox, "zed@microsoft.com", name="Zed Hiddenname", title="Secret Team")
    token = link_for(client, mailbox, "zed@microsoft.com")
    page = client.get(f"/manage/{token}")
    assert "a verified employee of Microsoft (your name is hidden)" in page.text
    for secret in ("Zed", "Hiddenname", "Secret Team"):
        assert secret not in page.text
    assert 'aria-describedby="name-hint"' in page.text
    # Empty fields keep the stored name: a threshold can be set without typing it again.
    done = act(client, token, "update", show_name="0", name="", title="", reveal_at="50")
    assert done.status_code == 200
    assert "Zed" not in done.text
    signature = signature_of(db, "Zed Hiddenname")
    assert (names_of(signature)[1], signature.reveal_at) == ("Secret Team", 50)
    assert signature.title == "" and "Secret" not in signature.sealed_name  # sealed at rest
    # An error page does not print it either.
    token = link_for(client, mailbox, "zed@microsoft.com")
    refused = act(client, token, "update", show_name="0", name="", reveal_at="7")
    assert refused.status_code == 422
    assert "Zed" not in refused.text


# --- the receipt as a key ------------------------------------------------------------------


def receipt_of(client, mailbox, email: str, **fields: Any) -> str:
    """Sign and confirm through the API; the receipt the signer was shown."""
    before = len(mailbox.messages)
    assert sign_api(client, email, **fields).status_code == 202
    mailbox.wait_for(before + 1)
    confirmed = confirm_api(client, mailbox.last_token(email.lower()))
    assert confirmed.status_code == 200
    return str(confirmed.json()["receipt"])


def use_receipt(client, receipt: str, action: str = "withdraw", slug: str = "test-letter") -> Any:
    path = f"/letters/{slug}/manage/receipt"
    page = client.get(path)
    assert page.status_code == 200
    data = {"csrftoken": csrf_from(page.text), "receipt": receipt, "action": action}
    return client.post(path, data=data)


def test_a_receipt_withdraws_a_signature_without_the_mailbox(client, letter, mailbox, db):
    receipt = receipt_of(client, mailbox, "ada@microsoft.com")
    receipt_of(client, mailbox, "grace@microsoft.com")
    assert counts(db)["verified"] == 2

    done = use_receipt(client, "  " + receipt + " ")
    assert done.status_code == 200
    assert "If this receipt belonged to a signature on this letter" in done.text
    assert receipt not in done.text
    assert counts(db)["verified"] == 1
    assert_consistent(db)
    kinds = [e.kind for e in db.exec(select(LedgerEntry).order_by(LedgerEntry.seq)).all()]
    assert kinds[-1] == "withdrawn"

    # Used again, or an unknown receipt: the same answer, and nothing changes.
    again = use_receipt(client, receipt)
    unknown = use_receipt(client, "0" * 32)
    for page in (again, unknown):
        assert page.status_code == 200
    strip = re.compile(r'name="csrftoken" value="[^"]*"')
    assert strip.sub("", again.text) == strip.sub("", unknown.text) == strip.sub("", done.text)
    assert counts(db)["verified"] == 1


def test_a_receipt_hides_a_name_and_keeps_the_signature_counted(client, letter, mailbox, db):
    receipt = receipt_of(client, mailbox, "ada@microsoft.com", name="Ada Lovelace", show_name=True)
    assert "Ada Lovelace" in client.get("/letters/test-letter").text

    assert use_receipt(client, receipt, "hide").status_code == 200
    c = assert_consistent(db)
    assert (c["verified"], c["named"], c["hidden"]) == (1, 0, 1)
    signature = db.exec(select(Signature)).one()
    assert (signature.name, signature.title, signature.show_name) == ("", "", False)
    assert "Ada Lovelace" not in client.get("/letters/test-letter").text


def test_a_receipt_works_on_a_closed_letter_and_is_rate_limited(client, letter, mailbox, db):
    receipt = receipt_of(client, mailbox, "ada@microsoft.com")
    close(db)
    assert use_receipt(client, receipt).status_code == 200
    assert counts(db)["verified"] == 0

    for _ in range(manage.RECEIPT_TRIES_PER_IP - 1):
        assert use_receipt(client, "f" * 32).status_code == 200
    assert use_receipt(client, "f" * 32).status_code == 429


def test_a_receipt_form_without_a_receipt_says_what_is_missing(client, letter):
    page = use_receipt(client, "   ")
    assert page.status_code == 422
    assert "Paste the receipt" in page.text
    assert client.get("/letters/no-such-letter/manage/receipt").status_code == 404
