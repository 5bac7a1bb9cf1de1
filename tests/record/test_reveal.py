"""Reveal thresholds: hidden names shown together once enough colleagues have signed."""

from __future__ import annotations

from typing import Any

from sqlmodel import col, select

from letters.models import LedgerEntry, Signature
from tests.helpers import assert_consistent, confirm_api, letter_csrf, sign_api
from tests.record.test_signer_control import act, link_for


def signed(client, mailbox, email: str, **fields: Any) -> None:
    before = len(mailbox.messages)
    response = sign_api(client, email, **fields)
    assert response.status_code == 202, response.text
    mailbox.wait_for(before + 1)
    assert confirm_api(client, mailbox.last_token(email)).status_code == 200


def sign_with_threshold(client, mailbox, email: str, name: str, reveal_at: Any) -> Any:
    before = len(mailbox.messages)
    response = client.post(
        "/api/letters/test-letter/signatures",
        json={"email": email, "name": name, "show_name": False, "reveal_at": reveal_at},
    )
    if response.status_code == 202:
        mailbox.wait_for(before + 1)
    return response


def shown(db) -> set[str]:
    db.rollback()
    return {s.name for s in db.exec(select(Signature).where(Signature.show_name == True))}  # noqa: E712


def test_waiting_names_are_shown_together_when_their_organization_reaches_the_threshold(
    client, letter, mailbox, db
):
    waiting = [f"Waiting Person{i}" for i in range(4)]
    for i, name in enumerate(waiting):
        response = sign_with_threshold(client, mailbox, f"w{i}@microsoft.com", name, 10)
        assert response.status_code == 202
        assert confirm_api(client, mailbox.last_token(f"w{i}@microsoft.com")).status_code == 200
    # Another organization's count never reveals Microsoft's names.
    for i in range(10):
        signed(client, mailbox, f"gh{i}@github.com")
    for i in range(5):
        signed(client, mailbox, f"m{i}@microsoft.com")
    assert shown(db) == set()
    page = client.get("/letters/test-letter").text
    assert "4 names from Microsoft will be shown\n      when 10 from Microsoft have signed." in page
    for name in waiting:
        assert name not in page
    c = assert_consistent(db)
    assert (c["verified"], c["named"], c["orgs"]["Microsoft"]) == (19, 0, 9)

    db.rollback()
    before = len(db.exec(select(LedgerEntry)).all())
    signed(client, mailbox, "tenth@microsoft.com")  # Microsoft reaches 10
    assert shown(db) == set(waiting)
    c = assert_consistent(db)
    assert (c["verified"], c["named"], c["hidden"]) == (20, 4, 16)
    # One "changed" entry each, right after the signature that reached the threshold.
    db.rollback()
    new = db.exec(
        select(LedgerEntry).where(LedgerEntry.seq > before).order_by(col(LedgerEntry.seq))
    ).all()
    assert [(e.kind, e.named) for e in new] == [("signed", False)] + [("changed", True)] * 4
    assert sorted(e.name for e in new[1:]) == sorted(waiting)
    page = client.get("/letters/test-letter").text
    assert all(name in page for name in waiting)
    assert "will be shown" not in page


def test_a_threshold_already_reached_shows_the_name_on_confirming(client, letter, mailbox, db):
    for i in range(10):
        signed(client, mailbox, f"m{i}@microsoft.com")
    sign_with_threshold(client, mailbox, "late@microsoft.com", "Late Comer", "10")
    assert confirm_api(client, mailbox.last_token("late@microsoft.com")).status_code == 200
    assert shown(db) == {"Late Comer"}
    c = assert_consistent(db)
    assert (c["verified"], c["named"]) == (11, 1)


def test_revealed_names_stay_revealed_when_withdrawals_lower_the_count(client, letter, mailbox, db):
    sign_with_threshold(client, mailbox, "early@microsoft.com", "Early Bird", 10)
    assert confirm_api(client, mailbox.last_token("early@microsoft.com")).status_code == 200
    for i in range(9):
        signed(client, mailbox, f"m{i}@microsoft.com")
    assert shown(db) == {"Early Bird"}
    assert act(client, link_for(client, mailbox, "m0@microsoft.com"), "withdraw").status_code == 200
    assert shown(db) == {"Early Bird"}
    c = assert_consistent(db)
    assert (c["verified"], c["named"], c["orgs"]["Microsoft"]) == (9, 1, 9)


def test_a_threshold_needs_a_name_and_one_of_the_offered_numbers(client, letter, mailbox, db):
    response = sign_with_threshold(client, mailbox, "a@microsoft.com", "", 10)
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "name"
    for bad in (7, 0, -10, "ten", True, 10.0, [10], "10 ", "\u0665\u0660"):
        response = sign_with_threshold(client, mailbox, "a@microsoft.com", "Ada", bad)
        assert response.status_code == 422, bad
        assert response.json()["error"]["field"] == "reveal_at"
    # With the name shown anyway the threshold means nothing and is dropped.
    response = client.post(
        "/api/letters/test-letter/signatures",
        json={"email": "b@microsoft.com", "name": "Bo", "show_name": True, "reveal_at": 50},
    )
    assert response.status_code == 202
    mailbox.wait_for(1)
    assert confirm_api(client, mailbox.last_token()).status_code == 200
    db.rollback()
    assert db.exec(select(Signature)).one().reveal_at is None


def test_the_html_form_offers_and_carries_a_threshold(client, letter, mailbox, db):
    page = client.get("/letters/test-letter")
    assert '<label for="reveal_at">' in page.text
    for n in (10, 50, 100, 500):
        assert f'<option value="{n}"' in page.text
    data = {
        "csrftoken": letter_csrf(client),
        "email": "ada@microsoft.com",
        "name": "Ada",
        "show_name": "0",
        "reveal_at": "50",
    }
    bad = client.post("/letters/test-letter/sign", data={**data, "reveal_at": "51"})
    assert bad.status_code == 422
    assert 'aria-describedby="reveal_at-hint reveal_at-error"' in bad.text
    assert client.post("/letters/test-letter/sign", data=data).status_code == 200  # redirected
    mailbox.wait_for(1)
    assert confirm_api(client, mailbox.last_token()).status_code == 200
    db.rollback()
    assert db.exec(select(Signature)).one().reveal_at == 50
    assert "1 name from Microsoft will be shown" in client.get("/letters/test-letter").text


def test_signing_again_can_set_a_threshold_that_is_already_reached(client, letter, mailbox, db):
    for i in range(10):
        signed(client, mailbox, f"m{i}@microsoft.com", name=f"Person {i}")
    sign_with_threshold(client, mailbox, "m3@microsoft.com", "Person 3", 10)
    assert confirm_api(client, mailbox.last_token("m3@microsoft.com")).status_code == 200
    assert shown(db) == {"Person 3"}
    assert_consistent(db)


def test_the_manage_page_sets_a_threshold_and_says_when_it_is_reached_at_once(
    client, letter, mailbox, db
):
    signed(client, mailbox, "ada@microsoft.com", name="Ada")
    page = client.get(f"/manage/{link_for(client, mailbox, 'ada@microsoft.com')}").text
    assert "Microsoft has 1 verified signature now." in page
    token = link_for(client, mailbox, "ada@microsoft.com")
    done = act(client, token, "update", show_name="0", name="Ada", reveal_at="10")
    assert "once 10 people from Microsoft have signed" in done.text
    assert "1 name from Microsoft will be shown" in client.get("/letters/test-letter").text
    for i in range(9):
        signed(client, mailbox, f"m{i}@microsoft.com")
    assert shown(db) == {"Ada"}
    # Hide again, then choose a number already reached: shown at once.
    act(client, link_for(client, mailbox, "ada@microsoft.com"), "update", show_name="0", name="Ada")
    assert shown(db) == set()
    done = act(
        client,
        link_for(client, mailbox, "ada@microsoft.com"),
        "update",
        show_name="0",
        name="Ada",
        reveal_at="10",
    )
    assert "your name is shown now" in done.text
    assert shown(db) == {"Ada"}
    assert_consistent(db)
