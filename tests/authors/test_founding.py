"""Founding rounds: a draft signed through a secret link, public with its count at launch."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import select

from letters.cli import main
from letters.db import make_async_engine, make_sessionmaker, writer
from letters.jobs import Launcher
from letters.models import (
    DailyCount,
    FoundingRound,
    LedgerEntry,
    PendingSignature,
    Signature,
    utcnow,
)
from letters.record import founding
from letters.web.logs import redact
from tests.authors.helpers import (
    create_draft,
    letter_row,
    post_form,
    queued,
    sign_in_as,
    sign_out,
)
from tests.helpers import assert_consistent, confirm_api, csrf_from

SLUG = "drop-the-contract"
FOUNDING_LINK = re.compile(r'value="http://testserver(/founding/[^"]+)"')
PUBLIC = [
    f"/letters/{SLUG}",
    f"/letters/{SLUG}/signatures",
    f"/letters/{SLUG}/history",
    f"/letters/{SLUG}/tally",
    f"/letters/{SLUG}/feed.atom",
    f"/letters/{SLUG}/badge.svg",
    f"/api/letters/{SLUG}",
    f"/api/letters/{SLUG}/ledger",
    f"/api/letters/{SLUG}/daily.csv",
]
LISTS = ["/", "/feed.atom", "/api/letters"]


def open_round(client, engine, email: str = "ada@example.org") -> str:
    """Sign in, start the draft, open its round; the founding link's path."""
    sign_in_as(client, engine, email)
    assert create_draft(client).status_code == 303
    page = f"/authors/letters/{SLUG}/founding"
    response = post_form(client, f"{page}/open", page=page)
    assert response.status_code == 303
    html = client.get(page).text
    match = FOUNDING_LINK.search(html)
    assert match, "no founding link on the round's page"
    return match.group(1)


def sign_founding(client, mailbox, link: str, email: str, **fields: str):
    """Sign through the founding page and confirm through the email's link (HTML both)."""
    page = client.get(link)
    assert page.status_code == 200
    count = len(mailbox.messages)
    data = {"csrftoken": csrf_from(page.text), "email": email, **fields}
    response = client.post(f"{link}/sign", data=data)
    assert response.status_code == 200, response.text
    assert "Check your work email" in response.text
    mailbox.wait_for(count + 1)
    token = mailbox.last_token(to=email)
    shown = client.get(f"/verify/{token}")
    assert shown.status_code == 200
    return client.post(f"/verify/{token}", data={"csrftoken": csrf_from(shown.text)})


def run(settings, work):
    async def main_():
        engine = make_async_engine(settings)
        try:
            async with make_sessionmaker(writer(engine))() as session:
                return await work(session)
        finally:
            await engine.dispose()

    return asyncio.run(main_())


def assert_not_public(client) -> None:
    for path in PUBLIC:
        assert client.get(path).status_code == 404, path
    for path in LISTS:
        response = client.get(path)
        assert response.status_code == 200
        assert "Drop the contract" not in response.text and SLUG not in response.text, path


def test_three_founding_signers_then_the_letter_launches_at_its_time(
    client, engine, db, mailbox, settings, capsys, tmp_path
):
    link = open_round(client, engine)
    madrid = ZoneInfo("Europe/Madrid")
    local = (datetime.now(madrid) + timedelta(days=2)).replace(
        hour=9, minute=0, second=0, microsecond=0, tzinfo=None
    )
    page = f"/authors/letters/{SLUG}/founding"
    response = post_form(
        client,
        f"{page}/plan",
        {
            "action": "plan",
            "launch_at": local.isoformat(timespec="minutes"),
            "time_zone": "Europe/Madrid",
        },
        page=page,
    )
    assert response.status_code == 303
    planned = client.get(page).text
    assert f"{local:%Y-%m-%d} 09:00 (Europe/Madrid)" in planned
    launch_at = local.replace(tzinfo=madrid).astimezone(UTC)
    db.rollback()
    assert db.exec(select(FoundingRound)).one().launch_at == launch_at
    sign_out(client)

    first = sign_founding(
        client, mailbox, link, "ada@microsoft.com", name="Ada Lovelace", show_name="1"
    )
    assert first.status_code == 200
    assert f"planned to go public on {local:%Y-%m-%d} 09:00 (Europe/Madrid)" in first.text
    assert "noindex" in first.headers["x-robots-tag"]
    receipt = re.search(r'class="receipt-code">([0-9a-f]+)<', first.text).group(1)
    assert sign_founding(client, mailbox, link, "bob@github.com").status_code == 200
    assert sign_founding(client, mailbox, link, "cy@microsoft.com", name="Cy").status_code == 200

    # Counted nowhere yet, and nowhere public.
    letter = letter_row(db, SLUG)
    assert (letter.status, letter.verified_count, letter.ledger_length) == ("draft", 0, 0)
    assert db.exec(select(DailyCount)).all() == []
    assert len(db.exec(select(Signature).where(Signature.founding)).all()) == 3
    assert_not_public(client)
    founding_page = client.get(link)
    assert founding_page.headers["x-robots-tag"] == "noindex, nofollow"
    assert founding_page.headers["cache-control"] == "no-store"
    assert SLUG not in founding_page.text

    # Not yet: nothing launches before its time.
    assert (
        run(settings, lambda s: founding.launch_due(s, settings, launch_at - timedelta(seconds=1)))
        == []
    )
    assert_not_public(client)

    # At the launch time the periodic job publishes it.
    assert run(settings, lambda s: founding.launch_due(s, settings, launch_at)) == [SLUG]
    c = assert_consistent(db, SLUG)
    assert (c["verified"], c["named"], c["hidden"]) == (3, 1, 2)
    assert c["orgs"] == {"Microsoft": 2, "GitHub": 1}
    entries = db.exec(select(LedgerEntry).order_by(LedgerEntry.seq)).all()
    day = launch_at.date().isoformat()
    assert [(e.seq, e.kind, e.day, e.organization, e.named) for e in entries] == [
        (1, "signed", day, "Microsoft", True),
        (2, "signed", day, "GitHub", False),
        (3, "signed", day, "Microsoft", False),
    ]
    daily = db.exec(select(DailyCount)).all()
    assert {(d.day, d.organization, d.count) for d in daily} == {
        (day, "Microsoft", 2),
        (day, "GitHub", 1),
    }

    assert client.get(f"/letters/{SLUG}").status_code == 200
    assert "Ada Lovelace" in client.get(f"/letters/{SLUG}/signatures").text
    assert client.get(f"/api/letters/{SLUG}").json()["verified_count"] == 3
    assert SLUG in client.get("/api/letters").text
    assert client.get(link).status_code == 404  # the round's link is done

    ledger_file = tmp_path / "ledger.jsonl"
    ledger_file.write_text(client.get(f"/api/letters/{SLUG}/ledger").text)
    try:
        main(["verify-ledger", str(ledger_file), "--receipt", receipt])
        code = 0
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else 1
    out = capsys.readouterr().out
    assert code == 0, out
    assert "Recounted: 3 verified signatures (1 named, 2 hidden)" in out
    assert "your signature is counted (ledger entries 1)" in out


def test_reveal_thresholds_are_met_at_launch_and_names_shown_together(
    client, engine, db, mailbox, settings
):
    link = open_round(client, engine)
    sign_out(client)
    for i in range(10):
        fields = {"name": f"Waiting {i}", "reveal_at": "10"} if i < 2 else {}
        assert (
            sign_founding(client, mailbox, link, f"p{i}@microsoft.com", **fields).status_code == 200
        )
    letter = letter_row(db, SLUG)
    assert run(settings, lambda s: founding.launch(s, letter.id, settings, utcnow())) is not None
    c = assert_consistent(db, SLUG)
    assert (c["verified"], c["named"], c["hidden"]) == (10, 2, 8)
    entries = db.exec(select(LedgerEntry).order_by(LedgerEntry.seq)).all()
    assert [e.kind for e in entries] == ["signed"] * 10  # shown from the start
    assert [e.named for e in entries[:3]] == [True, True, False]


def test_the_launcher_job_launches_a_round_whose_time_has_come(client, engine, db, settings):
    open_round(client, engine)
    db.rollback()
    round_ = db.exec(select(FoundingRound)).one()
    round_.launch_at = utcnow() - timedelta(seconds=1)
    db.add(round_)
    db.commit()

    async def job():
        async_engine = make_async_engine(settings)
        try:
            return await Launcher(make_sessionmaker(writer(async_engine)), settings).run_once()
        finally:
            await async_engine.dispose()

    assert asyncio.run(job()) == [SLUG]
    assert letter_row(db, SLUG).status == "published"
    assert client.get(f"/letters/{SLUG}").status_code == 200


def test_a_coauthor_runs_the_round_and_the_domain_check_applies(client, engine, db, mailbox):
    link = open_round(client, engine)
    invite = f"/authors/letters/{SLUG}/authors"
    assert post_form(client, invite, {"email": "co@example.org"}, page=invite).status_code == 200
    sign_in_as(client, engine, "co@example.org", can_create=False)
    page = f"/authors/letters/{SLUG}/founding"
    assert FOUNDING_LINK.search(client.get(page).text).group(1) == link
    assert post_form(client, f"{page}/link", page=page).status_code == 303
    link = FOUNDING_LINK.search(client.get(page).text).group(1)

    sign_out(client)
    form = client.get(link)
    count = len(mailbox.messages)
    data = {"csrftoken": csrf_from(form.text), "email": "someone@gmail.com"}
    refused = client.post(f"{link}/sign", data=data)
    assert refused.status_code == 422 and 'id="email-error"' in refused.text
    assert "noindex" in refused.headers["x-robots-tag"]
    assert len(mailbox.messages) == count


def test_publish_now_counts_the_founders_and_milestones_start_after_launch(
    client, engine, db, mailbox
):
    link = open_round(client, engine)
    sign_out(client)
    assert sign_founding(client, mailbox, link, "a@github.com").status_code == 200
    db.rollback()
    assert [m for m in queued(db) if "100" in m.subject] == []
    sign_in_as(client, engine, "ada@example.org")
    page = f"/authors/letters/{SLUG}/founding"
    response = post_form(client, f"{page}/launch", page=page)
    assert response.status_code == 303
    assert response.headers["location"] == f"/authors/letters/{SLUG}?published=1"
    c = assert_consistent(db, SLUG)
    assert c["verified"] == 1
    assert letter_row(db, SLUG).status == "published"


def test_the_text_is_frozen_while_the_round_is_open_and_closing_resets_it(
    client, engine, db, mailbox
):
    link = open_round(client, engine)
    sign_out(client)
    assert sign_founding(client, mailbox, link, "a@github.com").status_code == 200
    sign_in_as(client, engine, "ada@example.org")
    edit = f"/authors/letters/{SLUG}/edit"
    page = client.get(edit).text
    data = {"csrftoken": csrf_from(page), "action": "save", "title": "Another title", "slug": SLUG}
    data |= {"body": "Changed.", "domain-0": "github.com", "organization-0": "GitHub"}
    refused = client.post(edit, data=data, follow_redirects=False)
    assert refused.status_code == 403 and "frozen" in refused.text
    assert letter_row(db, SLUG).title == "Drop the contract"
    # Publishing the ordinary way is refused too: the round launches it.
    assert post_form(client, f"/authors/letters/{SLUG}/publish").status_code == 403
    overview = client.get(f"/authors/letters/{SLUG}").text
    assert "A founding round is open" in overview and "Publish this letter" not in overview

    page = f"/authors/letters/{SLUG}/founding"
    response = post_form(client, f"{page}/close", page=page)
    assert response.status_code == 303
    assert "1 founding signature was discarded" in client.get(response.headers["location"]).text
    db.rollback()
    assert db.exec(select(Signature)).all() == []
    assert client.get(link).status_code == 404
    assert client.post(edit, data=data, follow_redirects=False).status_code == 303


def test_a_replaced_link_stops_working_and_strangers_get_404(client, engine, mailbox):
    link = open_round(client, engine)
    page = f"/authors/letters/{SLUG}/founding"
    assert post_form(client, f"{page}/link", page=page).status_code == 303
    new = FOUNDING_LINK.search(client.get(page).text).group(1)
    assert new != link
    assert client.get(link).status_code == 404
    assert client.get(new).status_code == 200
    for bad in ("/founding/x", "/founding/" + "a" * 400, link[:-3] + "abc"):
        assert client.get(bad).status_code == 404
    # Another author knows nothing of the draft or its round.
    sign_in_as(client, engine, "stranger@example.org")
    assert client.get(page).status_code == 404
    assert post_form(client, f"{page}/launch", page="/authors").status_code == 404


def test_founding_links_are_refused_by_the_api_and_redacted_from_logs(client, engine, mailbox, db):
    link = open_round(client, engine)
    sign_out(client)
    page = client.get(link)
    client.post(f"{link}/sign", data={"csrftoken": csrf_from(page.text), "email": "a@github.com"})
    token = mailbox.last_token(to="a@github.com")
    response = confirm_api(client, token)
    assert response.status_code == 400  # the draft's slug is never told through the API
    assert SLUG not in response.text
    assert redact(f'"GET {link} HTTP/1.1" 200') == '"GET /founding/[redacted] HTTP/1.1" 200'


def test_bad_launch_times_are_refused_and_change_nothing(client, engine, db):
    open_round(client, engine)
    page = f"/authors/letters/{SLUG}/founding"
    for launch_at, zone, field in [
        ("yesterday", "UTC", "launch_at"),
        ("2020-01-01T09:00", "UTC", "launch_at"),
        ("2999-01-01T09:00", "Mars/Olympus", "time_zone"),
        ("2999-01-01T09:00", "../etc/passwd", "time_zone"),
    ]:
        response = post_form(
            client, f"{page}/plan", {"launch_at": launch_at, "time_zone": zone}, page=page
        )
        assert response.status_code == 422, (launch_at, zone)
        assert f'id="{field}-error"' in response.text
    db.rollback()
    assert db.exec(select(FoundingRound)).one().launch_at is None


def manage_link(client, mailbox, link: str, email: str) -> str:
    page = client.get(link)
    count = len(mailbox.messages)
    data = {"csrftoken": csrf_from(page.text), "email": email}
    response = client.post(f"{link}/manage", data=data)
    assert response.status_code == 200 and "Check your work email" in response.text
    mailbox.wait_for(count + 1)
    text = mailbox.text_of(mailbox.messages[-1])
    return re.search(r"http://testserver(/manage/[^\s]+)", text).group(1)


def test_founding_signers_can_change_or_withdraw_before_launch(
    client, engine, db, mailbox, settings
):
    link = open_round(client, engine)
    sign_out(client)
    assert sign_founding(client, mailbox, link, "a@github.com", name="Ann").status_code == 200
    assert sign_founding(client, mailbox, link, "b@github.com", name="Ben").status_code == 200
    # Signing again through the round changes the details; still one signature.
    again = sign_founding(client, mailbox, link, "a@github.com", name="Ann", show_name="1")
    assert again.status_code == 200 and "You had already signed" in again.text

    manage = manage_link(client, mailbox, link, "b@github.com")
    page = client.get(manage)
    assert page.status_code == 200
    assert "before it is public" in page.text and f"/letters/{SLUG}" not in page.text
    response = client.post(manage, data={"csrftoken": csrf_from(page.text), "action": "withdraw"})
    assert response.status_code == 200 and "never counted" in response.text
    assert SLUG not in response.text
    db.rollback()
    assert [s.name for s in db.exec(select(Signature)).all()] == ["Ann"]

    # An address that did not sign gets the same page, and no email.
    count = len(mailbox.messages)
    page = client.get(link)
    data = {"csrftoken": csrf_from(page.text), "email": "nobody@github.com"}
    response = client.post(f"{link}/manage", data=data)
    assert response.status_code == 200 and "Check your work email" in response.text

    letter = letter_row(db, SLUG)
    assert run(settings, lambda s: founding.launch(s, letter.id, settings, utcnow())) is not None
    c = assert_consistent(db, SLUG)
    assert (c["verified"], c["named"], c["hidden"]) == (1, 1, 0)
    assert len(mailbox.messages) == count


def test_a_founding_link_confirmed_after_launch_counts_as_a_public_signature(
    client, engine, db, mailbox, settings
):
    link = open_round(client, engine)
    sign_out(client)
    page = client.get(link)
    data = {"csrftoken": csrf_from(page.text), "email": "late@github.com"}
    assert client.post(f"{link}/sign", data=data).status_code == 200
    token = mailbox.last_token(to="late@github.com")
    shown = client.get(f"/verify/{token}")
    assert "before it is public" in shown.text and f"/letters/{SLUG}" not in shown.text

    letter = letter_row(db, SLUG)
    assert run(settings, lambda s: founding.launch(s, letter.id, settings, utcnow())) is not None
    assert assert_consistent(db, SLUG)["verified"] == 0
    # Had the link been read just before the launch, the round's confirmation steps
    # aside, leaving the link unused, for the public one.
    pending = db.exec(select(PendingSignature)).one().model_dump()
    with pytest.raises(founding.Launched):
        run(settings, lambda s: founding.confirm(s, settings.keys, pending, utcnow(), "0" * 32))
    response = client.post(f"/verify/{token}", data={"csrftoken": csrf_from(shown.text)})
    assert response.status_code == 200 and "now has" in response.text
    assert assert_consistent(db, SLUG)["verified"] == 1
