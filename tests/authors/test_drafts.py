"""Drafting, publishing, closing and reopening, and the bad input each form must survive."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlmodel import select

from letters.jobs import Closer
from letters.models import AllowedDomain, Letter, LetterVersion, utcnow
from tests.authors.helpers import (
    DRAFT,
    create_draft,
    letter_row,
    post_form,
    publish,
    sign,
    sign_in_as,
)
from tests.helpers import confirm_api, sign_api


@pytest.fixture
def author(client, engine):
    return sign_in_as(client, engine, "ada@example.org")


def edit(client, current: str, **changes: str):
    """Save the draft at `current` with `changes`, as its edit form would."""
    page = f"/authors/letters/{current}/edit"
    html = client.get(page).text
    loaded = re.search(r'name="loaded" value="([^"]+)"', html)
    data = {**DRAFT, "slug": current, "action": "save", **changes}
    data["loaded"] = loaded.group(1) if loaded else ""
    return post_form(client, page, data)


def test_a_draft_is_private_until_published(client, author, db):
    assert create_draft(client).status_code == 303
    for path in [
        "/letters/drop-the-contract",
        "/api/letters/drop-the-contract",
        "/letters/drop-the-contract/history",
        "/letters/drop-the-contract/history/1",
        "/letters/drop-the-contract/tally",
    ]:
        assert client.get(path).status_code == 404, path
    assert "drop-the-contract" not in client.get("/api/letters").text
    assert publish(client, "drop-the-contract").status_code == 303
    assert client.get("/api/letters/drop-the-contract").json()["status"] == "published"
    db.rollback()
    letter = letter_row(db, "drop-the-contract")
    versions = db.exec(select(LetterVersion).where(LetterVersion.letter_id == letter.id)).all()
    assert [(v.number, v.title, v.body) for v in versions] == [(1, letter.title, letter.body)]
    domains = db.exec(select(AllowedDomain).where(AllowedDomain.letter_id == letter.id)).all()
    assert {(d.domain, d.organization, d.include_subdomains) for d in domains} == {
        ("microsoft.com", "Microsoft", False),
        ("github.com", "GitHub", False),
        ("corp.example", "Example Corp", True),
    }


def test_errors_are_tied_to_their_fields_and_nothing_typed_is_lost(client, author, db):
    response = create_draft(
        client,
        title="",
        slug="Not A Slug!",
        goal="lots",
        closes_on="2020-01-01",
        **{"domain-1": "not a domain", "organization-2": ""},
    )
    assert response.status_code == 422
    html = response.text
    assert "<title>Error:" in html
    for field in ["title", "slug", "goal", "closes_on", "domain-1", "organization-2"]:
        assert f'id="{field}-error"' in html, field
        assert re.search(rf'id="{field}"[^>]*aria-describedby="[^"]*{field}-error', html, re.S)
        assert re.search(rf'id="{field}"[^>]*aria-invalid="true"', html, re.S)
        assert f'href="#{field}"' in html  # the summary links to the field
    assert "For example: not-a-slug" in html
    assert "We, the undersigned employees" in html  # the text typed is still there
    assert 'value="not a domain"' in html
    db.rollback()
    assert db.exec(select(Letter)).all() == []


@pytest.mark.parametrize(
    "slug",
    [
        "../etc/passwd",
        "a/b",
        "..",
        "%2e%2e",
        "Test-Letter",
        "-leading",
        "trailing-",
        "double--hyphen",
        "x" * 81,
        "sp ace",
        "nul\x00byte",
        "ünïcode",
        "new",
    ],
)
def test_slugs_with_path_tricks_are_refused(client, author, db, slug):
    response = create_draft(client, slug=slug)
    assert response.status_code == 422
    assert 'id="slug-error"' in response.text
    db.rollback()
    assert db.exec(select(Letter)).all() == []


def test_an_empty_slug_is_made_from_the_title(client, author, db):
    response = create_draft(client, slug="", title="Stop the ICE contract — now!")
    assert response.headers["location"] == "/authors/letters/stop-the-ice-contract-now?saved=1"


def test_a_slug_that_collides_is_refused_with_the_text_kept(client, author, letter, db):
    response = create_draft(client, slug="test-letter")  # the imported letter's
    assert response.status_code == 422
    assert "Another letter already has this address" in response.text
    assert "We, the undersigned employees" in response.text
    create_draft(client, slug="second")
    response = edit(client, "second", slug="test-letter")
    assert response.status_code == 422
    assert letter_row(db, "second").title == DRAFT["title"]


def test_a_draft_can_change_its_address(client, author, db):
    create_draft(client)
    response = edit(client, "drop-the-contract", slug="a-better-address", title="Better")
    assert response.headers["location"] == "/authors/letters/a-better-address?saved=1"
    assert client.get("/authors/letters/drop-the-contract").status_code == 404
    assert letter_row(db, "a-better-address").title == "Better"


def test_an_enormous_body_is_refused_clearly(client, author, db):
    too_long = "word " * 4_001  # 20,005 characters: fits in a request, not in a letter
    response = create_draft(client, body=too_long)
    assert response.status_code == 422
    assert "at most 20,000" in response.text
    assert too_long.strip() in response.text  # kept, to shorten
    huge = "x" * 70_000  # over MAX_BODY_BYTES: refused before it is read
    page = client.get("/authors/sign-in").text
    from tests.helpers import csrf_from

    response = client.post(
        "/authors/letters/new",
        data={"csrftoken": csrf_from(page), **DRAFT, "body": huge, "action": "save"},
    )
    assert response.status_code == 413
    db.rollback()
    assert db.exec(select(Letter)).all() == []


def test_raw_html_and_script_are_neutralized(client, author, db):
    body = (
        "<script>alert(1)</script>\n\n<img src=x onerror=alert(2)>\n\n"
        "[click](javascript:alert(3)) and <a href='javascript:alert(4)'>this</a>\n\n"
        '<iframe src="https://evil.example"></iframe> **still bold**'
    )
    preview = post_form(
        client, "/authors/letters/new", {**DRAFT, "body": body, "action": "preview"}
    )
    create_draft(client, body=body)
    assert letter_row(db, "drop-the-contract").body == body  # stored as typed: nothing lost
    publish(client, "drop-the-contract")
    for html in [
        preview.text,
        client.get("/authors/letters/drop-the-contract/preview").text,
        client.get("/letters/drop-the-contract").text,
        client.get("/letters/drop-the-contract/history/1").text,
    ]:
        assert "<script>alert" not in html
        assert "<img" not in html and "<iframe" not in html
        assert 'href="javascript:' not in html
        assert "<strong>still bold</strong>" in html


def test_control_characters_are_dropped_from_the_text(client, author, db):
    create_draft(client, body="Line one\r\nLine\x00 two\x07\r\n")
    assert letter_row(db, "drop-the-contract").body == "Line one\nLine two"


def test_domain_rows_are_checked_and_more_can_be_added(client, author, db):
    response = create_draft(
        client,
        **{
            "domain-0": "@Microsoft.com",
            "domain-1": "microsoft.com",
            "domain-2": "",
            "organization-2": "Nobody",
        },
    )
    assert response.status_code == 422
    assert "microsoft.com is listed twice" in response.text
    assert 'id="domain-2-error"' in response.text
    more = post_form(client, "/authors/letters/new", {**DRAFT, "action": "more_domains"})
    assert more.status_code == 200 and 'id="domain-5"' in more.text
    db.rollback()
    assert db.exec(select(Letter)).all() == []


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"goal": "0"}, "goal"),
        ({"goal": "-5"}, "goal"),
        ({"goal": "1e9"}, "goal"),
        ({"goal": "99999999999999999999"}, "goal"),
        ({"closes_on": "31/12/2030"}, "closes_on"),
        ({"closes_on": "2030-02-30"}, "closes_on"),
        ({"closes_on": "9999-01-01"}, "closes_on"),
        ({"title": "x" * 201}, "title"),
        ({"title": "bidi\u202etrick"}, "title"),
        ({"organization-0": "y" * 101}, "organization-0"),
    ],
)
def test_bad_settings_are_refused_per_field(client, author, db, changes, field):
    response = create_draft(client, **changes)
    assert response.status_code == 422
    assert f'id="{field}-error"' in response.text


def test_a_failed_publish_leaves_the_draft_as_it_was(client, author, db):
    no_domains = {
        f"{k}-{i}": "" for k in ("domain", "organization", "subdomains") for i in range(3)
    }
    assert create_draft(client, body="", **no_domains).status_code == 303
    before = letter_row(db, "drop-the-contract")
    snapshot = (before.status, before.title, before.body, before.updated_at, before.version)
    response = publish(client, "drop-the-contract")
    assert response.status_code == 422
    assert "Write the letter" in response.text and "at least one company domain" in response.text
    after = letter_row(db, "drop-the-contract")
    assert (after.status, after.title, after.body, after.updated_at, after.version) == snapshot
    assert client.get("/letters/drop-the-contract").status_code == 404


def test_publishing_twice_and_editing_a_published_text_are_refused(client, author, db):
    create_draft(client)
    publish(client, "drop-the-contract")
    again = publish(client, "drop-the-contract")
    assert again.status_code == 403 and "already published" in again.text
    response = edit(client, "drop-the-contract", title="Sneaky in-place edit")
    assert response.status_code == 303  # to the revision page: never saved in place
    assert response.headers["location"] == "/authors/letters/drop-the-contract/revise"
    assert letter_row(db, "drop-the-contract").title == DRAFT["title"]


def test_two_authors_saving_one_draft_do_not_overwrite_each_other(client, author, engine, db):
    create_draft(client)
    page = "/authors/letters/drop-the-contract/edit"
    stale = re.search(r'name="loaded" value="([^"]+)"', client.get(page).text).group(1)
    assert edit(client, "drop-the-contract", title="First save").status_code == 303
    data = {**DRAFT, "loaded": stale, "title": "Second save", "action": "save"}
    conflict = post_form(client, page, data, page=page)
    assert conflict.status_code == 409
    assert "Someone else saved this draft" in conflict.text
    assert 'value="Second save"' in conflict.text  # their text is kept in the form
    assert letter_row(db, "drop-the-contract").title == "First save"


def test_closing_stops_signatures_and_pending_links_then_reopening(client, author, mailbox, db):
    create_draft(client)
    publish(client, "drop-the-contract")
    sign(client, mailbox, "one@github.com", "drop-the-contract")
    assert sign_api(client, "two@github.com", slug="drop-the-contract").status_code == 202
    mailbox.wait_for(2)
    pending_token = mailbox.last_token(to="two@github.com")
    assert post_form(client, "/authors/letters/drop-the-contract/close").status_code == 303
    assert confirm_api(client, pending_token).status_code == 409
    assert sign_api(client, "three@github.com", slug="drop-the-contract").status_code == 409
    api = client.get("/api/letters/drop-the-contract").json()
    assert (api["status"], api["verified_count"]) == ("closed", 1)
    again = post_form(client, "/authors/letters/drop-the-contract/close")
    assert again.status_code == 403
    assert post_form(client, "/authors/letters/drop-the-contract/reopen").status_code == 303
    assert confirm_api(client, pending_token).status_code == 200
    assert client.get("/api/letters/drop-the-contract").json()["verified_count"] == 2


def test_a_letter_closes_by_itself_on_its_closing_date(client, author, db):
    tomorrow = (utcnow() + timedelta(days=1)).date().isoformat()
    create_draft(client, closes_on=tomorrow)
    publish(client, "drop-the-contract")
    overview = client.get("/authors/letters/drop-the-contract").text
    assert f"at the end of {tomorrow} (UTC), by itself" in overview
    form = client.get("/authors/letters/drop-the-contract/settings").text
    assert f'value="{tomorrow}"' in form
    closer = Closer(client.app.state.writer)
    assert client.portal.call(closer.run_once) == []
    letter = letter_row(db, "drop-the-contract")
    letter.closes_at = utcnow() - timedelta(seconds=1)
    db.add(letter)
    db.commit()
    assert client.portal.call(closer.run_once) == ["drop-the-contract"]
    assert letter_row(db, "drop-the-contract").status == "closed"
    refused = post_form(client, "/authors/letters/drop-the-contract/reopen")
    assert refused.status_code == 403 and "closing date has passed" in refused.text
    later = (utcnow() + timedelta(days=3)).date().isoformat()
    page = "/authors/letters/drop-the-contract/settings"
    post_form(client, page, {"closes_on": later, "ask_title": "1", "action": "save"}, page=page)
    assert post_form(client, "/authors/letters/drop-the-contract/reopen").status_code == 303


def test_settings_after_publishing_add_domains_but_never_remove_them(client, author, db, mailbox):
    create_draft(client)
    publish(client, "drop-the-contract")
    page = "/authors/letters/drop-the-contract/settings"
    duplicate = post_form(
        client,
        page,
        {"ask_title": "1", "domain-0": "github.com", "organization-0": "GitHub", "action": "save"},
        page=page,
    )
    assert duplicate.status_code == 422 and "github.com is already allowed" in duplicate.text
    added = post_form(
        client,
        page,
        {"goal": "1,000", "domain-0": "linkedin.com", "organization-0": "LinkedIn"},
        page=page,
    )
    assert added.status_code == 303
    letter = letter_row(db, "drop-the-contract")
    assert (letter.goal, letter.ask_title) == (1000, False)
    assert sign(client, mailbox, "x@linkedin.com", "drop-the-contract").status_code == 200
    audit = client.get("/authors/letters/drop-the-contract/audit").text
    assert "added linkedin.com (LinkedIn)" in audit and "goal: 1,000" in audit


@pytest.mark.parametrize(
    "value",
    ["", " ", "\x00", "\ud800".encode("utf-8", "surrogatepass").decode("latin-1"), "💥" * 300],
)
def test_no_input_makes_a_server_error(client, author, db, value):
    create_draft(client)
    publish(client, "drop-the-contract")
    create_draft(client, slug="a-draft")
    fields = [
        "title",
        "slug",
        "body",
        "goal",
        "closes_on",
        "note",
        "domain-0",
        "organization-0",
        "email",
        "reason",
        "details",
        "base",
        "loaded",
        "action",
    ]
    targets = [
        "/authors/letters/new",
        "/authors/letters/a-draft/edit",
        "/authors/letters/drop-the-contract/revise",
        "/authors/letters/drop-the-contract/settings",
        "/authors/letters/drop-the-contract/authors",
        "/authors/sign-in",
    ]
    for target in targets:
        for field in fields:
            response = post_form(client, target, {**DRAFT, field: value}, page=target)
            assert response.status_code < 500, (target, field)


def test_no_address_or_query_makes_a_server_error(client, author, mailbox):
    create_draft(client)
    publish(client, "drop-the-contract")
    sign(client, mailbox, "x@github.com", "drop-the-contract", name="X", show_name=True)
    odd = ["%00", "%ff", "-1", "99999999999999999999", "x" * 2000, "%E2%80%AE", "1e3", "[]"]
    for value in odd:
        for path in [
            f"/authors/letters/drop-the-contract/signatures?before={value}&named={value}",
            f"/letters/drop-the-contract/history/1?compare={value}",
            f"/authors/sign-in?next={value}",
            f"/authors/sign-in/{value}",
            f"/authors/letters/{value}",
            f"/authors/letters/drop-the-contract/signatures/{value}/invalidate",
            f"/letters/{value}/history",
        ]:
            response = client.get(path)
            assert response.status_code < 500, path


def test_the_letter_is_marked_with_the_language_its_authors_wrote_it_in(client, author, db):
    assert create_draft(client).status_code == 303
    assert edit(client, "drop-the-contract", language="").status_code == 303  # English
    db.rollback()
    assert letter_row(db, "drop-the-contract").language == "en"
    refused = edit(client, "drop-the-contract", language="français <b>")
    assert refused.status_code == 422
    assert "a code such as en, es, fr or pt-BR" in refused.text
    assert edit(client, "drop-the-contract", language="pt-br").status_code == 303
    assert (
        'name="language" type="text" value="pt-BR"'
        in client.get("/authors/letters/drop-the-contract/edit").text
    )
    assert publish(client, "drop-the-contract").status_code == 303
    # The page is in the reader's language; the letter's title and text in the authors'.
    page = client.get("/letters/drop-the-contract", headers={"Accept-Language": "es"}).text
    assert '<html lang="es">' in page
    assert '<h1 lang="pt-BR">Drop the contract</h1>' in page
    assert '<div class="body" lang="pt-BR">' in page
