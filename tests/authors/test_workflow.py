"""Authors from start to finish: the story of a first-time author, and signing in by link."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import pytest
from sqlmodel import select
from starlette.testclient import TestClient

from letters.authors.accounts import add_admin
from letters.models import AuditEntry, AuthorLink, AuthorSession, Signature, utcnow
from tests.authors.helpers import (
    DRAFT,
    SESSION_COOKIE,
    SIGN_IN_LINK,
    letter_row,
    post_form,
    sign,
)
from tests.helpers import assert_consistent, csrf_from


def link_from(mailbox, to: str) -> str:
    for message in reversed(mailbox.messages):
        if message["To"] == to:
            match = SIGN_IN_LINK.search(mailbox.text_of(message))
            assert match, "no sign-in link in the email"
            return match.group(0)
    raise AssertionError(f"no email to {to}")


def sign_in_by_email(client, mailbox, email: str) -> None:
    count = len(mailbox.messages)
    response = post_form(client, "/authors/sign-in", {"email": email}, page="/authors/sign-in")
    assert response.status_code == 303
    assert response.headers["location"] == "/authors/sign-in/sent"
    mailbox.wait_for(count + 1)
    link = link_from(mailbox, email)
    page = client.get(link)
    assert page.status_code == 200 and "Sign in" in page.text
    response = client.post(link, data={"csrftoken": csrf_from(page.text)}, follow_redirects=False)
    assert response.status_code == 303
    assert SESSION_COOKIE in response.headers["set-cookie"]


def test_a_first_time_author_from_sign_in_to_export(client, engine, db, mailbox):
    # An admin (made with `letters admin add`) allows the author.
    add_admin(engine, "admin@letters.example")
    sign_in_by_email(client, mailbox, "admin@letters.example")
    response = post_form(
        client,
        "/authors/admin",
        {"action": "add", "email": "Ada@Example.org"},
        page="/authors/admin",
    )
    assert response.status_code == 200 and "ada@example.org can now sign in" in response.text
    post_form(client, "/authors/sign-out", page="/authors")

    # She signs in with a link from her email.
    sign_in_by_email(client, mailbox, "ada@example.org")
    home = client.get("/authors")
    assert home.status_code == 200 and "Start a new letter" in home.text

    # She drafts a letter for her company's domains and previews it.
    form = client.get("/authors/letters/new")
    assert form.status_code == 200
    preview = post_form(
        client, "/authors/letters/new", {**DRAFT, "action": "preview"}, page="/authors/letters/new"
    )
    assert preview.status_code == 200
    assert "<strong>drop the contract</strong>" in preview.text
    assert letter_row_or_none(db, "drop-the-contract") is None  # a preview saves nothing
    created = post_form(client, "/authors/letters/new", {**DRAFT, "action": "save"})
    assert created.status_code == 303
    assert created.headers["location"] == "/authors/letters/drop-the-contract?saved=1"
    assert client.get("/letters/drop-the-contract").status_code == 404  # a draft is private
    full_preview = client.get("/authors/letters/drop-the-contract/preview")
    assert "<strong>drop the contract</strong>" in full_preview.text

    # She publishes it.
    response = post_form(client, "/authors/letters/drop-the-contract/publish")
    assert response.status_code == 303
    public = client.get("/letters/drop-the-contract")
    assert public.status_code == 200 and "Sign this letter" in public.text

    # The first signatures arrive, on version 1.
    assert sign(client, mailbox, "early@microsoft.com", "drop-the-contract").status_code == 200

    # She revises it with a note: a new version, the old one kept.
    page = client.get("/authors/letters/drop-the-contract/revise")
    new_body = DRAFT["body"] + "\n\nWe also ask for an ethics review."
    response = post_form(
        client,
        "/authors/letters/drop-the-contract/revise",
        {
            "title": DRAFT["title"],
            "body": new_body,
            "note": "Added the ethics review.",
            "base": "1",
            "action": "publish",
        },
        page="/authors/letters/drop-the-contract/revise",
    )
    assert page.status_code == 200 and response.status_code == 303
    assert "ethics review" in client.get("/letters/drop-the-contract").text
    history = client.get("/letters/drop-the-contract/history")
    assert "Added the ethics review." in history.text
    changes = client.get("/letters/drop-the-contract/history/2")
    assert '<ins><span class="visually-hidden">added line: </span>We also ask' in changes.text

    # She watches signatures arrive, and a troll signs with a fake name.
    for number in range(3):
        sign(client, mailbox, f"person{number}@github.com", "drop-the-contract")
    sign(
        client,
        mailbox,
        "troll@microsoft.com",
        "drop-the-contract",
        name="Satya Nadella (not really)",
        show_name=True,
    )
    sign(client, mailbox, "grace@corp.example", "drop-the-contract", name="Grace H", show_name=True)
    listing = client.get("/authors/letters/drop-the-contract/signatures")
    assert "Satya Nadella (not really)" in listing.text and "troll@" not in listing.text
    assert listing.text.count(">hidden<") == 4
    c = assert_consistent(db, "drop-the-contract")
    assert (c["verified"], c["named"], c["hidden"]) == (6, 2, 4)

    # She hides the troll's name: it still counts, as hidden.
    troll = db.exec(select(Signature).where(Signature.name == "Satya Nadella (not really)")).one()
    response = post_form(
        client,
        f"/authors/letters/drop-the-contract/signatures/{troll.id}/hide",
        page="/authors/letters/drop-the-contract/signatures",
    )
    assert response.status_code == 303
    assert "Satya Nadella" not in client.get("/letters/drop-the-contract").text
    c = assert_consistent(db, "drop-the-contract")
    assert (c["verified"], c["named"], c["hidden"]) == (6, 1, 5)
    audit = client.get("/authors/letters/drop-the-contract/audit").text
    assert "Hid a signer" in audit and "Satya" not in audit

    # The signatures show which version they confirmed.
    versions = client.get("/letters/drop-the-contract/history").text
    assert re.search(r"Version 2</a> \(current\).*?<td>5</td>", versions, re.DOTALL)
    assert re.search(r"Version 1</a>.*?<td>1</td>", versions, re.DOTALL)

    # She closes the letter: it stays public with its count but takes no signatures.
    response = post_form(client, "/authors/letters/drop-the-contract/close")
    assert response.status_code == 303
    assert letter_row(db, "drop-the-contract").status == "closed"
    public = client.get("/letters/drop-the-contract")
    assert "has closed" in public.text and "Sign this letter" not in public.text

    # And she downloads the export for delivery.
    export = client.get("/authors/letters/drop-the-contract/export.csv")
    assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert [(r["type"], r["name"], r["organization"]) for r in rows if r["type"] == "named"] == [
        ("named", "Grace H", "Example Corp")
    ]
    hidden = {r["organization"]: int(r["signatures"]) for r in rows if r["type"] == "hidden"}
    assert hidden == {"GitHub": 3, "Microsoft": 2}
    assert sum(int(r["signatures"]) for r in rows) == 6
    assert "@" not in export.text and "Satya" not in export.text
    printable = client.get("/authors/letters/drop-the-contract/export")
    assert printable.status_code == 200 and "Grace H" in printable.text
    assert "and 3 verified employees of GitHub" in printable.text


def letter_row_or_none(db, slug):
    from letters.models import Letter

    db.rollback()
    return db.exec(select(Letter).where(Letter.slug == slug)).first()


def test_a_sign_in_link_works_once_and_only_by_post(client, engine, db, mailbox):
    add_admin(engine, "ada@example.org")
    post_form(client, "/authors/sign-in", {"email": "ada@example.org"}, page="/authors/sign-in")
    mailbox.wait_for(1)
    link = link_from(mailbox, "ada@example.org")
    for _ in range(3):  # mail scanners open links again and again
        assert client.get(link).status_code == 200
        assert client.head(link).status_code == 200
    db.rollback()
    assert db.exec(select(AuthorLink)).one().used_at is None
    assert db.exec(select(AuthorSession)).all() == []

    page = client.get(link)
    token = csrf_from(page.text)
    assert client.post(link, data={"csrftoken": token}, follow_redirects=False).status_code == 303
    again = client.post(link, data={"csrftoken": token}, follow_redirects=False)
    assert again.status_code == 400 and "already been used" in again.text
    assert client.get(link).status_code == 400


def test_a_sign_in_link_expires(client, engine, db, mailbox):
    add_admin(engine, "ada@example.org")
    post_form(client, "/authors/sign-in", {"email": "ada@example.org"}, page="/authors/sign-in")
    mailbox.wait_for(1)
    link = link_from(mailbox, "ada@example.org")
    db.rollback()
    row = db.exec(select(AuthorLink)).one()
    row.expires_at = utcnow() - timedelta(seconds=1)
    db.add(row)
    db.commit()
    page = client.get(link)
    assert page.status_code == 400 and "expired" in page.text
    response = client.post(link, data={"csrftoken": csrf_from(client.get("/authors/sign-in").text)})
    assert response.status_code == 400
    assert client.get("/authors", follow_redirects=False).status_code == 303


def test_unknown_addresses_get_the_same_answer_and_no_email(client, mailbox, engine):
    add_admin(engine, "ada@example.org")
    unknown = post_form(
        client, "/authors/sign-in", {"email": "nobody@example.org"}, page="/authors/sign-in"
    )
    known = post_form(
        client, "/authors/sign-in", {"email": "ada@example.org"}, page="/authors/sign-in"
    )
    assert unknown.status_code == known.status_code == 303
    assert unknown.headers["location"] == known.headers["location"]
    mailbox.wait_for(1)
    assert [m["To"] for m in mailbox.messages] == ["ada@example.org"]


def test_sign_out_makes_a_copied_cookie_worthless(client, engine, mailbox):
    add_admin(engine, "ada@example.org")
    sign_in_by_email(client, mailbox, "ada@example.org")
    cookie = client.cookies.get(SESSION_COOKIE)
    assert client.get("/authors").status_code == 200
    response = post_form(client, "/authors/sign-out", page="/authors")
    assert response.status_code == 303
    assert client.get("/authors", follow_redirects=False).status_code == 303
    client.cookies.set(SESSION_COOKIE, cookie)  # replayed after signing out
    response = client.get("/authors", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/authors/sign-in")


def test_forged_session_cookies_are_refused(client, engine):
    from letters.authors.accounts import SESSION_SALT
    from letters.tokens import Signer
    from tests.conftest import SECRET

    add_admin(engine, "ada@example.org")
    right_key = Signer(SECRET).untimed(SESSION_SALT)
    wrong_key = Signer("another-secret-key-that-is-long-enough-01234").untimed(SESSION_SALT)
    for forged in [
        "x",
        "a.b",
        "ImFiYyI.forged",
        "%C3%A9t%C3%A9",
        "A" * 500,
        "",
        right_key.dumps("a-token-of-no-session"),  # signed right, but no such session
        right_key.dumps(123),
        wrong_key.dumps("a-token"),
        Signer(SECRET).untimed("csrf").dumps("a-token"),  # another purpose's signature
    ]:
        client.cookies.set(SESSION_COOKIE, forged)
        response = client.get("/authors", follow_redirects=False)
        assert response.status_code == 303, forged
        response = post_form(client, "/authors/letters/new", {"title": "X", "action": "save"})
        assert response.status_code == 303 and "/authors/sign-in" in response.headers["location"]


def test_sign_out_everywhere_ends_every_session(client, engine, db):
    from tests.authors.helpers import session_cookie, sign_in_as

    author = sign_in_as(client, engine, "ada@example.org")
    other_device = session_cookie(engine, author)
    response = post_form(client, "/authors/sign-out", {"everywhere": "1"}, page="/authors")
    assert response.status_code == 303
    client.cookies.set(SESSION_COOKIE, other_device)
    assert client.get("/authors", follow_redirects=False).status_code == 303


def test_the_session_cookie_is_httponly_samesite_and_scoped(client, engine, mailbox):
    add_admin(engine, "ada@example.org")
    post_form(client, "/authors/sign-in", {"email": "ada@example.org"}, page="/authors/sign-in")
    mailbox.wait_for(1)
    link = link_from(mailbox, "ada@example.org")
    page = client.get(link)
    response = client.post(link, data={"csrftoken": csrf_from(page.text)}, follow_redirects=False)
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "path=/authors" in cookie
    assert response.headers["cache-control"] == "no-store"


def test_signing_in_returns_to_the_page_asked_for(client, engine, mailbox):
    add_admin(engine, "ada@example.org")
    response = client.get("/authors/admin", follow_redirects=False)
    assert response.headers["location"] == "/authors/sign-in?next=/authors/admin"
    page = client.get(response.headers["location"])
    assert 'name="next" value="/authors/admin"' in page.text
    post_form(
        client,
        "/authors/sign-in",
        {"email": "ada@example.org", "next": "/authors/admin"},
        page="/authors/sign-in",
    )
    mailbox.wait_for(1)
    text = mailbox.text_of(mailbox.messages[-1])
    link = re.search(r"http://testserver(/authors/sign-in/\S+)", text).group(1)
    page = client.get(link)
    response = client.post(
        link,
        data={"csrftoken": csrf_from(page.text), "next": "/authors/admin"},
        follow_redirects=False,
    )
    assert response.headers["location"] == "/authors/admin"
    # Elsewhere is never a destination.
    for evil in ["//evil.example", "https://evil.example", "/authors/../x", "/letters/x"]:
        page = client.get(link)  # used: shows the problem page, nothing else
        response = post_form(
            client,
            "/authors/sign-in",
            {"email": "ada@example.org", "next": evil},
            page="/authors/sign-in",
        )
        assert response.status_code == 303
    assert "evil" not in mailbox.text_of(mailbox.messages[-1])


def test_audit_log_records_publishing(client, engine, db, mailbox):
    from tests.authors.helpers import create_draft, publish, sign_in_as

    sign_in_as(client, engine, "ada@example.org")
    create_draft(client)
    publish(client, "drop-the-contract")
    db.rollback()
    actions = [entry.action for entry in db.exec(select(AuditEntry).order_by(AuditEntry.id))]
    assert actions == ["created", "published"]


def test_letters_admin_add_and_list(monkeypatch, database_url, tmp_path, engine, capsys):
    from letters.cli import main
    from tests.conftest import SECRET

    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("SECRET_KEY", SECRET)
    monkeypatch.setenv("ENVIRONMENT", "test")
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    main(["admin", "add", "Root@Example.org"])
    assert "Added admin Root@Example.org" in capsys.readouterr().out
    main(["admin", "add", "root@example.org"])
    assert "Made admin" in capsys.readouterr().out
    main(["admin", "list"])
    assert capsys.readouterr().out == "root@example.org\n"
    with pytest.raises(SystemExit) as exit_:
        main(["admin", "add", "not an address"])
    assert "letters admin add:" in str(exit_.value.code)


def test_a_co_author_is_invited_by_email_and_signs_in(client, engine, mailbox, db):
    from tests.authors.helpers import create_draft, sign_in_as, sign_out

    sign_in_as(client, engine, "owner@example.org")
    create_draft(client)
    page = "/authors/letters/drop-the-contract/authors"
    response = post_form(client, page, {"email": "Bob@Example.org"}, page=page)
    assert response.status_code == 200 and "bob@example.org" in response.text
    again = post_form(client, page, {"email": "bob@example.org"}, page=page)
    assert again.status_code == 422 and "already an author" in again.text
    mailbox.wait_for(1)
    invitation = mailbox.messages[0]
    assert invitation["To"] == "bob@example.org"
    assert "Drop the contract" in str(invitation["Subject"])
    assert "http://testserver/authors/sign-in" in mailbox.text_of(invitation)
    sign_out(client)
    sign_in_by_email(client, mailbox, "bob@example.org")
    home = client.get("/authors").text
    assert "Drop the contract" in home and "co-author" in home
    assert "Start a new letter" not in home


def test_sign_in_emails_are_rate_limited(client, engine, mailbox):
    add_admin(engine, "ada@example.org")
    for _ in range(5):
        response = post_form(
            client, "/authors/sign-in", {"email": "ada@example.org"}, page="/authors/sign-in"
        )
        assert response.status_code == 303
    limited = post_form(
        client, "/authors/sign-in", {"email": "ADA@example.org"}, page="/authors/sign-in"
    )
    assert limited.status_code == 429 and limited.headers["retry-after"]
    bad = post_form(client, "/authors/sign-in", {"email": "no"}, page="/authors/sign-in")
    assert bad.status_code == 422 and 'aria-describedby="email-hint email-error"' in bad.text


def test_strangers_spending_an_authors_limit_never_lock_the_author_out(app, engine, mailbox):
    # Anyone may ask for sign-in links to any address; a browser that signed in by link
    # before has a limit of its own, which those requests cannot spend.
    add_admin(engine, "ada@example.org")
    with TestClient(app) as author, TestClient(app) as stranger:
        sign_in_by_email(author, mailbox, "ada@example.org")
        assert "letters_device" in author.cookies
        post_form(author, "/authors/sign-out", page="/authors")
        for _ in range(4):  # what is left of the address's limit after that first link
            asked = post_form(
                stranger, "/authors/sign-in", {"email": "ada@example.org"}, page="/authors/sign-in"
            )
            assert asked.status_code == 303
        refused = post_form(
            stranger, "/authors/sign-in", {"email": "Ada@example.org"}, page="/authors/sign-in"
        )
        assert refused.status_code == 429
        # The author's own browser still gets its link, and signs in with it.
        mailbox.wait_for(5)
        sign_in_by_email(author, mailbox, "ada@example.org")
        assert author.get("/authors", follow_redirects=False).status_code == 200

        # The cookie is the author's browser's own: for another address it counts for
        # nothing, and a forged one neither.
        add_admin(engine, "bob@example.org")
        for _ in range(5):
            post_form(
                stranger, "/authors/sign-in", {"email": "bob@example.org"}, page="/authors/sign-in"
            )
        post_form(author, "/authors/sign-out", page="/authors")
        other = post_form(
            author, "/authors/sign-in", {"email": "bob@example.org"}, page="/authors/sign-in"
        )
        assert other.status_code == 429
        stranger.cookies.set("letters_device", "forged.value", path="/authors")
        forged = post_form(
            stranger, "/authors/sign-in", {"email": "ada@example.org"}, page="/authors/sign-in"
        )
        assert forged.status_code == 429


def test_every_author_form_field_has_a_label(client, engine, mailbox):
    from html.parser import HTMLParser

    from tests.authors.helpers import create_draft, sign, sign_in_as

    class Fields(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.ids: list[str] = []
            self.labels: set[str] = set()
            self.unnamed: list[str] = []

            self.in_label = 0

        def handle_starttag(self, tag, attrs):
            attributes = dict(attrs)
            if tag == "label":
                self.in_label += 1
                if attributes.get("for"):
                    self.labels.add(attributes["for"])
            if tag in ("input", "textarea", "select"):
                if attributes.get("type") in ("hidden", "submit") or self.in_label:
                    return  # a field inside its <label> is labelled by it
                if "id" not in attributes:
                    self.unnamed.append(str(attributes))
                else:
                    self.ids.append(attributes["id"])

        def handle_endtag(self, tag):
            if tag == "label":
                self.in_label -= 1

    sign_in_as(client, engine, "ada@example.org", admin=True)
    create_draft(client, slug="a-draft")
    create_draft(client)
    post_form(client, "/authors/letters/drop-the-contract/publish")
    sign(client, mailbox, "x@github.com", "drop-the-contract", name="X", show_name=True)
    pages = [
        "/authors",
        "/authors/admin",
        "/authors/letters/new",
        "/authors/letters/a-draft",
        "/authors/letters/a-draft/edit",
        "/authors/letters/drop-the-contract",
        "/authors/letters/drop-the-contract/revise",
        "/authors/letters/drop-the-contract/settings",
        "/authors/letters/drop-the-contract/authors",
        "/authors/letters/drop-the-contract/signatures",
        "/authors/letters/drop-the-contract/signatures/1/invalidate",
        "/authors/letters/drop-the-contract/audit",
        "/authors/letters/drop-the-contract/export",
        "/letters/drop-the-contract/history/1",
    ]
    for page in pages:
        response = client.get(page)
        assert response.status_code == 200, page
        parser = Fields()
        parser.feed(response.text)
        assert parser.unnamed == [], page
        unlabelled = [i for i in parser.ids if i not in parser.labels]
        assert unlabelled == [], page
        assert response.headers["cache-control"] == "no-store" or page.startswith("/letters")
