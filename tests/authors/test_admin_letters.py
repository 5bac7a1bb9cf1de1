"""Admins see every public letter in /authors and may join one; drafts stay private."""

from __future__ import annotations

from sqlmodel import select

from letters.models import AuditEntry, Author, LetterAuthor
from tests.authors.helpers import (
    SESSION_COOKIE,
    create_draft,
    letter_row,
    post_form,
    publish,
    sign_in_as,
)
from tests.conftest import make_letter


def roles(db, slug: str) -> list[tuple[str, str]]:
    letter = letter_row(db, slug)
    rows = db.exec(
        select(Author.email, LetterAuthor.role)
        .join(LetterAuthor, LetterAuthor.author_id == Author.id)
        .where(LetterAuthor.letter_id == letter.id)
    ).all()
    return sorted(rows)


def test_an_admin_sees_every_public_letter_but_no_one_else_s_draft(client, engine):
    make_letter(engine, "imported-letter")  # loaded by `letters import`: no author
    make_letter(engine, "closed-letter", status="closed")
    make_letter(engine, "imported-draft", status="draft")
    sign_in_as(client, engine, "owner@example.org")
    create_draft(client, slug="owned-letter", title="Owned letter")
    publish(client, "owned-letter")
    create_draft(client, slug="secret-draft", title="Secret draft")

    sign_in_as(client, engine, "admin@example.org", admin=True)
    create_draft(client, slug="admins-own", title="Admin's own")
    page = client.get("/authors")
    assert page.status_code == 200
    others = page.text.split('id="every-letter"', 1)[1]
    for slug in ("imported-letter", "closed-letter", "owned-letter"):
        assert f"/authors/letters/{slug}/join" in others, slug
    for slug in ("imported-draft", "secret-draft", "admins-own"):
        assert f"/letters/{slug}" not in others, slug
    assert "Secret draft" not in page.text
    assert "Become the owner" in others and "Become a co-author" in others


def test_other_authors_do_not_see_the_list(client, engine):
    make_letter(engine, "imported-letter")
    sign_in_as(client, engine, "author@example.org")
    page = client.get("/authors")
    assert 'id="every-letter"' not in page.text and "imported-letter" not in page.text


def test_an_admin_takes_over_an_imported_letter_then_closes_and_exports_it(client, engine, db):
    make_letter(engine, "imported-letter")
    sign_in_as(client, engine, "admin@example.org", admin=True)
    response = post_form(client, "/authors/letters/imported-letter/join", page="/authors")
    assert response.status_code == 303
    assert response.headers["location"] == "/authors/letters/imported-letter"
    assert roles(db, "imported-letter") == [("admin@example.org", "owner")]
    audit = db.exec(select(AuditEntry)).all()
    assert [(a.action, a.author_email, a.detail) for a in audit] == [
        ("joined", "admin@example.org", "as owner")
    ]
    assert "Joined as an admin" in client.get("/authors/letters/imported-letter/audit").text
    assert client.get("/authors/letters/imported-letter/export.csv").status_code == 200
    assert client.get("/authors/letters/imported-letter/signatures").status_code == 200
    closed = post_form(client, "/authors/letters/imported-letter/close", page="/authors")
    assert closed.status_code == 303
    assert letter_row(db, "imported-letter").status == "closed"
    # Joined letters move to the admin's own list; joining again changes nothing.
    assert "/authors/letters/imported-letter/join" not in client.get("/authors").text
    again = post_form(client, "/authors/letters/imported-letter/join", page="/authors")
    assert again.status_code == 303
    assert roles(db, "imported-letter") == [("admin@example.org", "owner")]
    assert len(db.exec(select(AuditEntry)).all()) == 2  # joined, closed


def test_an_admin_joins_an_owned_letter_as_a_co_author(client, engine, db):
    sign_in_as(client, engine, "owner@example.org")
    create_draft(client, slug="owned-letter")
    publish(client, "owned-letter")
    sign_in_as(client, engine, "admin@example.org", admin=True)
    assert post_form(client, "/authors/letters/owned-letter/join").status_code == 303
    assert roles(db, "owned-letter") == [
        ("admin@example.org", "coauthor"),
        ("owner@example.org", "owner"),
    ]


def test_nobody_joins_a_draft_and_only_admins_join_at_all(client, engine, db):
    make_letter(engine, "imported-draft", status="draft")
    make_letter(engine, "imported-letter")
    sign_in_as(client, engine, "author@example.org")
    refused = post_form(client, "/authors/letters/imported-letter/join")
    assert refused.status_code == 403
    assert "Only an admin" in refused.text
    sign_in_as(client, engine, "admin@example.org", admin=True)
    for slug in ("imported-draft", "no-such-letter", "Bad_Slug"):
        assert post_form(client, f"/authors/letters/{slug}/join").status_code == 404, slug
    client.cookies.delete(SESSION_COOKIE)
    signed_out = post_form(client, "/authors/letters/imported-letter/join")
    assert signed_out.status_code == 303
    assert signed_out.headers["location"] == "/authors/sign-in"
    db.rollback()
    assert db.exec(select(LetterAuthor)).all() == []
    assert db.exec(select(AuditEntry)).all() == []


def test_a_get_joins_nothing(client, engine, db):
    make_letter(engine, "imported-letter")
    sign_in_as(client, engine, "admin@example.org", admin=True)
    assert client.get("/authors/letters/imported-letter/join").status_code == 405
    assert db.exec(select(LetterAuthor)).all() == []
