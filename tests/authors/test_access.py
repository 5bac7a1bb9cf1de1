"""Who may do what: every author page and action, tried by people who may not."""

from __future__ import annotations

from typing import Any

import pytest
from sqlmodel import func, select

from letters.models import (
    AuditEntry,
    Letter,
    LetterAuthor,
    LetterVersion,
    OutboxMessage,
    Signature,
)
from tests.authors.helpers import (
    SESSION_COOKIE,
    create_draft,
    make_author,
    post_form,
    publish,
    session_cookie,
    sign,
    sign_in_as,
)
from tests.helpers import csrf_from

PAGES = [
    "/authors/letters/{slug}",
    "/authors/letters/{slug}/edit",
    "/authors/letters/{slug}/preview",
    "/authors/letters/{slug}/settings",
    "/authors/letters/{slug}/revise",
    "/authors/letters/{slug}/authors",
    "/authors/letters/{slug}/signatures",
    "/authors/letters/{slug}/signatures/{signature}/invalidate",
    "/authors/letters/{slug}/audit",
    "/authors/letters/{slug}/export",
    "/authors/letters/{slug}/export.csv",
]

ACTIONS: list[tuple[str, dict[str, str]]] = [
    ("/authors/letters/{slug}/edit", {"title": "Hijacked", "slug": "{slug}", "action": "save"}),
    ("/authors/letters/{slug}/publish", {}),
    ("/authors/letters/{slug}/close", {}),
    ("/authors/letters/{slug}/reopen", {}),
    ("/authors/letters/{slug}/settings", {"goal": "5", "action": "save"}),
    (
        "/authors/letters/{slug}/revise",
        {"title": "Hijacked", "body": "New text", "note": "Mine now", "action": "publish"},
    ),
    ("/authors/letters/{slug}/authors", {"email": "friend@example.org"}),
    ("/authors/letters/{slug}/authors/{owner}/remove", {}),
    ("/authors/letters/{slug}/signatures/{signature}/hide", {}),
    ("/authors/letters/{slug}/signatures/{signature}/invalidate", {"reason": "spam"}),
]


@pytest.fixture
def world(client, engine, mailbox) -> dict[str, Any]:
    """A published letter with a named and a hidden signature, a draft, and another letter."""
    owner = sign_in_as(client, engine, "owner@example.org")
    create_draft(client, slug="published-letter")
    publish(client, "published-letter")
    create_draft(client, slug="draft-letter", title="Secret draft")
    sign(client, mailbox, "named@github.com", "published-letter", name="Named", show_name=True)
    sign(client, mailbox, "hidden@github.com", "published-letter")

    other_owner = sign_in_as(client, engine, "other@example.org")
    create_draft(client, slug="other-letter")
    post_form(
        client,
        "/authors/letters/other-letter/authors",
        {"email": "coauthor@example.org"},
        page="/authors/letters/other-letter/authors",
    )
    client.cookies.delete(SESSION_COOKIE)
    stranger = make_author(engine, "stranger@example.org")
    with engine.connect() as connection:
        signature = connection.execute(select(Signature.id).where(Signature.name == "Named"))
        signature_id = signature.scalar_one()
    coauthor = make_author(engine, "coauthor@example.org", can_create=False)
    return {
        "owner": owner,
        "other_owner": other_owner,
        "cookies": {
            "owner": session_cookie(engine, owner),
            "stranger": session_cookie(engine, stranger),
            "coauthor of another letter": session_cookie(engine, coauthor),
        },
        "signature": signature_id,
    }


def snapshot(db) -> dict[str, Any]:
    """Everything an action could change."""
    db.rollback()
    letters = db.exec(select(Letter).order_by(Letter.id)).all()
    return {
        "letters": [
            (
                letter.slug,
                letter.title,
                letter.body,
                letter.status,
                letter.version,
                letter.goal,
                letter.verified_count,
                letter.named_count,
            )
            for letter in letters
        ],
        "signatures": db.exec(select(Signature.id, Signature.name, Signature.show_name)).all(),
        "authors": db.exec(select(LetterAuthor.letter_id, LetterAuthor.author_id)).all(),
        "versions": db.exec(select(func.count()).select_from(LetterVersion)).one(),
        "audit": db.exec(select(func.count()).select_from(AuditEntry)).one(),
        "outbox": db.exec(select(func.count()).select_from(OutboxMessage)).one(),
    }


def fill(template: str, world: dict[str, Any], slug: str) -> str:
    return template.format(slug=slug, signature=world["signature"], owner=world["owner"].id)


@pytest.mark.parametrize("who", ["stranger", "coauthor of another letter", "signed out"])
@pytest.mark.parametrize("slug", ["published-letter", "draft-letter"])
def test_no_page_or_action_for_people_without_a_part(client, world, db, who, slug):
    csrf = csrf_from(client.get("/authors/sign-in").text)
    if who != "signed out":
        client.cookies.set(SESSION_COOKIE, world["cookies"][who])
    before = snapshot(db)
    for template in PAGES:
        response = client.get(fill(template, world, slug), follow_redirects=False)
        if who == "signed out":
            assert response.status_code == 303, template
            assert response.headers["location"].startswith("/authors/sign-in")
        else:
            assert response.status_code == 404, template
        assert "Secret draft" not in response.text and "Named" not in response.text
    for template, data in ACTIONS:
        fields = {key: value.format(slug=slug) for key, value in data.items()}
        response = client.post(
            fill(template, world, slug), data={"csrftoken": csrf, **fields}, follow_redirects=False
        )
        if who == "signed out":
            assert response.status_code == 303, template
            assert response.headers["location"] == "/authors/sign-in"
        else:
            assert response.status_code == 404, template
    assert snapshot(db) == before


@pytest.mark.parametrize("who", ["stranger", "coauthor of another letter", "signed out"])
def test_an_unknown_letter_looks_like_a_stranger_s(client, world, who):
    if who != "signed out":
        client.cookies.set(SESSION_COOKIE, world["cookies"][who])
    for slug in ["no-such-letter", "%2e%2e", "A", "a_b", "x" * 81, "new-"]:
        response = client.get(f"/authors/letters/{slug}", follow_redirects=False)
        assert response.status_code in (303, 404)


def test_a_co_author_may_work_on_the_letter_but_not_manage_its_authors(client, world, engine, db):
    client.cookies.set(SESSION_COOKIE, world["cookies"]["owner"])
    post_form(
        client,
        "/authors/letters/published-letter/authors",
        {"email": "coauthor@example.org"},
        page="/authors/letters/published-letter/authors",
    )
    client.cookies.set(SESSION_COOKIE, world["cookies"]["coauthor of another letter"])
    for template in PAGES:
        response = client.get(fill(template, world, "published-letter"))
        assert response.status_code == 200, template
    page = "/authors/letters/published-letter/authors"
    invite = post_form(client, page, {"email": "friend@example.org"}, page=page)
    remove = post_form(client, fill(ACTIONS[7][0], world, "published-letter"), page=page)
    assert invite.status_code == remove.status_code == 403
    assert "Only the letter&#39;s owner" in invite.text
    settings = post_form(
        client,
        "/authors/letters/published-letter/settings",
        {"goal": "500", "action": "save"},
        page="/authors/letters/published-letter/settings",
    )
    assert settings.status_code == 303
    db.rollback()
    assert db.exec(select(Letter).where(Letter.slug == "published-letter")).one().goal == 500
    # ...and may leave it.
    me = make_author(engine, "coauthor@example.org", can_create=False)
    leave = post_form(client, f"{page}/{me.id}/remove", page=page)
    assert leave.status_code == 303
    assert client.get("/authors/letters/published-letter").status_code == 404


def test_only_admins_allow_authors_and_only_allowed_authors_start_letters(client, world, engine):
    for who in ["stranger", "coauthor of another letter", "owner"]:
        client.cookies.set(SESSION_COOKIE, world["cookies"][who])
        assert client.get("/authors/admin").status_code == 403
        response = post_form(client, "/authors/admin", {"action": "add", "email": "x@example.org"})
        assert response.status_code == 403
    client.cookies.set(SESSION_COOKIE, world["cookies"]["coauthor of another letter"])
    assert client.get("/authors/letters/new").status_code == 403
    refused = create_draft(client, slug="sneaky")
    assert refused.status_code == 403 and "ask an admin" in refused.text.lower()
    client.cookies.delete(SESSION_COOKIE)
    assert client.get("/authors/admin", follow_redirects=False).status_code == 303
    assert client.get("/authors/letters/new", follow_redirects=False).status_code == 303


def test_an_admin_allows_and_stops_authors(client, engine, db):
    sign_in_as(client, engine, "admin@example.org", admin=True)
    page = "/authors/admin"
    added = post_form(client, page, {"action": "add", "email": "new@example.org"}, page=page)
    assert added.status_code == 200
    newcomer = make_author(engine, "new@example.org")
    stopped = post_form(client, page, {"action": "stop", "author_id": str(newcomer.id)}, page=page)
    assert "new@example.org can no longer start letters" in stopped.text
    client.cookies.set(SESSION_COOKIE, session_cookie(engine, newcomer))
    assert client.get("/authors/letters/new").status_code == 403
    bad = post_form(client, page, {"action": "add", "email": "not an address"}, page=page)
    assert bad.status_code == 403  # not an admin: refused before reading anything


def test_csrf_less_posts_are_refused(client, world, db):
    client.cookies.set(SESSION_COOKIE, world["cookies"]["owner"])
    before = snapshot(db)
    for template, data in ACTIONS:
        path = fill(template, world, "published-letter")
        fields = {key: value.format(slug="published-letter") for key, value in data.items()}
        for token in [None, "forged", csrf_from(client.get("/authors/sign-in").text) + "x"]:
            body = dict(fields) if token is None else {**fields, "csrftoken": token}
            response = client.post(path, data=body, follow_redirects=False)
            assert response.status_code == 403, path
    assert snapshot(db) == before
