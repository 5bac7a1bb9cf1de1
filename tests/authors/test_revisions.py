"""Honest revisions: new versions with public notes, their history, diffs and signatures."""

from __future__ import annotations

import re

import pytest
from sqlmodel import select

from letters.authors.revisions import compare
from letters.migrate import alembic_config, upgrade
from letters.models import AuditEntry, LetterVersion, Signature
from tests.authors.helpers import (
    DRAFT,
    create_draft,
    letter_row,
    post_form,
    publish,
    sign,
    sign_in_as,
)
from tests.conftest import ON_POSTGRES, make_settings
from tests.helpers import assert_consistent, confirm_api, sign_api

SLUG = "drop-the-contract"
REVISE = f"/authors/letters/{SLUG}/revise"


@pytest.fixture
def published(client, engine):
    sign_in_as(client, engine, "ada@example.org")
    create_draft(client)
    publish(client, SLUG)


def revise(client, base: str = "1", action: str = "publish", **changes: str):
    data = {"title": DRAFT["title"], "body": DRAFT["body"], "base": base, "action": action}
    return post_form(client, REVISE, {**data, **changes}, page=REVISE)


def test_a_revision_is_a_new_version_and_the_old_one_stays(client, published, db):
    response = revise(client, body=DRAFT["body"] + "\n\nAnd more.", note="Added a sentence.")
    assert response.status_code == 303
    assert response.headers["location"] == f"/authors/letters/{SLUG}?revised=2"
    letter = letter_row(db, SLUG)
    assert (letter.version, letter.revision_note) == (2, "Added a sentence.")
    versions = db.exec(select(LetterVersion).order_by(LetterVersion.number)).all()
    assert [(v.number, v.note) for v in versions] == [(1, ""), (2, "Added a sentence.")]
    assert versions[0].body == DRAFT["body"] and versions[1].body.endswith("And more.")
    page = client.get(f"/letters/{SLUG}").text
    assert "And more." in page and "Version 2" in page and "Added a sentence." in page
    old = client.get(f"/letters/{SLUG}/history/1").text
    assert "not the current text" in old and "And more." not in old.split("Compare")[0]
    audit = db.exec(select(AuditEntry).where(AuditEntry.action == "revised")).one()
    assert audit.detail == "Added a sentence."


def test_a_note_is_required_and_nothing_changed_is_refused(client, published, db):
    missing = revise(client, body="Changed.", note="")
    assert missing.status_code == 422 and 'id="note-error"' in missing.text
    assert "Changed." in missing.text  # the new text is kept
    same = revise(client, note="No change")
    assert same.status_code == 422 and "Nothing changed" in same.text
    assert letter_row(db, SLUG).version == 1


def test_a_preview_shows_the_changes_and_publishes_nothing(client, published, db):
    response = revise(
        client, action="preview", title="Drop the contract now", body="Totally new text."
    )
    assert response.status_code == 200
    assert "<del>" in response.text and "<ins>" in response.text
    assert "Totally new text." in response.text
    assert "Title: <del>" in re.sub(r"\s+", " ", response.text)
    assert letter_row(db, SLUG).version == 1


def test_a_stale_revision_is_refused_and_its_text_kept(client, published, db):
    assert revise(client, body="First change.", note="One").status_code == 303
    stale = revise(client, base="1", body="Second change.", note="Two")
    assert stale.status_code == 409 and "Another author published a new version" in stale.text
    assert "Second change." in stale.text
    assert letter_row(db, SLUG).body == "First change."


def test_only_a_published_letter_is_revised(client, engine, db):
    sign_in_as(client, engine, "ada@example.org")
    create_draft(client)
    assert client.get(REVISE, follow_redirects=False).status_code == 303
    publish(client, SLUG)
    post_form(client, f"/authors/letters/{SLUG}/close")
    assert client.get(REVISE, follow_redirects=False).status_code == 303
    response = revise(client, body="Changed after closing.", note="Sneaky")
    assert response.status_code == 303 and letter_row(db, SLUG).version == 1


def test_each_signature_records_the_version_it_confirmed(client, published, mailbox, db):
    sign(client, mailbox, "a@github.com", SLUG)
    sign(client, mailbox, "b@github.com", SLUG)
    # A link asked for under version 1 and confirmed under version 2 confirms version 2.
    assert sign_api(client, "c@github.com", slug=SLUG).status_code == 202
    mailbox.wait_for(3)
    pending = mailbox.last_token(to="c@github.com")
    revise(client, body="New text.", note="Rewritten")
    assert confirm_api(client, pending).status_code == 200
    sign(client, mailbox, "d@github.com", SLUG)
    db.rollback()
    versions = dict(db.exec(select(Signature.email_hash, Signature.letter_version)).all())
    assert sorted(versions.values()) == [1, 1, 2, 2]
    history = client.get(f"/letters/{SLUG}/history").text
    assert re.search(r"Version 2</a> \(current\).*?Rewritten.*?<td>2</td>", history, re.S)
    assert re.search(r"Version 1</a>.*?First published.*?<td>2</td>", history, re.S)
    # Confirming again under version 2 moves a signature to it.
    sign(client, mailbox, "a@github.com", SLUG, name="A", show_name=True)
    history = client.get(f"/letters/{SLUG}/history").text
    assert re.search(r"Version 2</a> \(current\).*?<td>3</td>", history, re.S)
    assert_consistent(db, SLUG)


def test_version_pages_compare_any_two_versions(client, published, db):
    revise(client, body=DRAFT["body"] + "\n\nSecond.", note="Two")
    revise(client, base="2", body=DRAFT["body"] + "\n\nThird.", note="Three")
    latest = client.get(f"/letters/{SLUG}/history/3")
    assert "Changes between version 2 and version 3" in latest.text
    first_to_last = client.get(f"/letters/{SLUG}/history/3?compare=1").text
    assert "Changes between version 1 and version 3" in first_to_last
    assert '<option value="1" selected>' in first_to_last
    for bad in [
        "/history/0",
        "/history/4",
        "/history/3?compare=3",
        "/history/3?compare=9",
        "/history/x",
        "/history/-1",
    ]:
        assert client.get(f"/letters/{SLUG}{bad}").status_code == 404, bad
    assert client.get(f"/letters/{SLUG}/history/2?compare=%00").status_code == 200


def test_an_imported_letter_keeps_its_first_text_when_revised(client, engine, letter, db):
    from letters.models import AuthorRole, LetterAuthor

    author = sign_in_as(client, engine, "ada@example.org")
    db.add(LetterAuthor(letter_id=letter.id, author_id=author.id, role=AuthorRole.owner))
    db.commit()
    assert client.get("/letters/test-letter/history").status_code == 200
    response = post_form(
        client,
        "/authors/letters/test-letter/revise",
        {"title": "Test letter", "body": "Rewritten.", "note": "New text", "base": "1"},
        page="/authors/letters/test-letter/revise",
    )
    assert response.status_code == 303
    db.rollback()
    versions = db.exec(select(LetterVersion).order_by(LetterVersion.number)).all()
    assert [(v.number, v.body) for v in versions] == [
        (1, "We ask for **better** things."),
        (2, "Rewritten."),
    ]


def test_compare_marks_words_lines_and_folds_what_did_not_change():
    old_body = "\n".join(f"Line {n}" for n in range(20)) + "\nWe ask for a review."
    new_body = "\n".join(f"Line {n}" for n in range(20)) + "\nWe demand an ethics review.\nNew."
    old = LetterVersion(letter_id=1, number=1, title="T", body=old_body)
    new = LetterVersion(letter_id=1, number=2, title="T2", body=new_body)
    result = compare(old, new)
    assert result.title_changed and (result.added, result.removed) == (2, 1)
    kinds = [line.kind for line in result.lines]
    assert kinds[0] == "skipped" and result.lines[0].count == 18
    assert kinds[1:3] == ["same", "same"]
    removed = [line for line in result.lines if line.kind == "removed"]
    added = [line for line in result.lines if line.kind == "added"]
    assert [line.text for line in removed] == ["We ask for a review."]
    assert [line.text for line in added] == ["We demand an ethics review.", "New."]
    same = compare(old, LetterVersion(letter_id=1, number=3, title="T", body=old_body))
    assert (same.added, same.removed, same.title_changed) == (0, 0, False)
    one_word = compare(
        old,
        LetterVersion(
            letter_id=1, number=4, title="T", body=old_body.replace("a review", "an audit")
        ),
    )
    changed = [line for line in one_word.lines if line.kind == "changed"]
    parts = changed[0].parts
    assert "".join(text for op, text in parts if op != "added") == "We ask for a review."
    assert "".join(text for op, text in parts if op != "removed") == "We ask for an audit."
    assert [text for op, text in parts if op == "removed"] == ["a", "review."]
    assert [text for op, text in parts if op == "added"] == ["an", "audit."]


def test_the_migration_makes_version_1_of_letters_already_published(tmp_path, database_url):
    from alembic import command
    from sqlalchemy import text

    from letters.db import make_sync_engine

    url = database_url if ON_POSTGRES else f"sqlite:///{tmp_path / 'before.db'}"
    settings = make_settings(url)
    config = alembic_config(settings)
    if ON_POSTGRES:
        command.downgrade(config, "base")
    command.upgrade(config, "25fad0ff4143")  # the last revision without authors
    engine = make_sync_engine(settings)
    with engine.begin() as connection:
        for number, status in enumerate(["published", "closed", "draft"], start=1):
            connection.execute(
                text(
                    "INSERT INTO letter (id, slug, title, body, status, ask_title, created_at,"
                    " published_at, updated_at, verified_count, named_count, hidden_count)"
                    " VALUES (:id, :slug, 'Old', 'Old body', :status, true, :now, :now, :now,"
                    " 0, 0, 0)"
                ),
                {"id": number, "slug": f"old-{number}", "status": status, "now": "2026-01-02"},
            )
        connection.execute(
            text(
                "INSERT INTO signature (letter_id, email_hash, domain, organization, name, title,"
                " show_name, commitment, verified_at, updated_at) VALUES (1, :hash, 'x.com',"
                " 'X', '', '', false, :commitment, :now, :now)"
            ),
            {"hash": "a" * 64, "commitment": "b" * 64, "now": "2026-01-02"},
        )
    engine.dispose()
    upgrade(settings)
    engine = make_sync_engine(settings)
    with engine.connect() as connection:
        versions = connection.execute(
            text("SELECT letter_id, number, title, body FROM letter_version ORDER BY letter_id")
        ).all()
        letters = connection.execute(text("SELECT version FROM letter ORDER BY id")).all()
        signed = connection.execute(text("SELECT letter_version FROM signature")).scalar_one()
    engine.dispose()
    assert [tuple(row) for row in versions] == [
        (1, 1, "Old", "Old body"),
        (2, 1, "Old", "Old body"),
    ]
    assert [row[0] for row in letters] == [1, 1, 1]
    assert signed == 1
