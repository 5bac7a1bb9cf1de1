"""The `letters` command."""

from __future__ import annotations

import pytest
from sqlmodel import Session, select

from letters.cli import main
from letters.importer import DEMO_LETTER, LetterFileError, load_demo, parse_letter
from letters.models import (
    AllowedDomain,
    AuditEntry,
    Author,
    Letter,
    LetterAuthor,
    LetterStatus,
    LetterVersion,
    utcnow,
)
from tests.conftest import SECRET, TEST_LETTER
from tests.live import http_client, running_server


@pytest.fixture
def cli_env(monkeypatch, database_url, tmp_path):
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("SECRET_KEY", SECRET)
    monkeypatch.setenv("ENVIRONMENT", "test")
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path))
    monkeypatch.chdir(tmp_path)  # no stray .env file


def test_import_creates_then_updates(cli_env, tmp_path, engine, capsys):
    path = tmp_path / "letter.md"
    path.write_text(TEST_LETTER)
    main(["import", str(path)])
    assert "Created letter 'test-letter' (published)" in capsys.readouterr().out
    path.write_text(TEST_LETTER.replace("title: Test letter", "title: Better title"))
    main(["import", str(path)])
    assert "Updated letter" in capsys.readouterr().out
    with Session(engine) as session:
        letters = session.exec(select(Letter)).all()
        assert [letter.title for letter in letters] == ["Better title"]
        domains = session.exec(select(AllowedDomain)).all()
        assert {(d.domain, d.organization, d.include_subdomains) for d in domains} == {
            ("microsoft.com", "Microsoft", False),
            ("github.com", "GitHub", False),
            ("corp.example", "Example Corp", True),
        }
        # A published text is never edited in place: the change is version 2, and
        # version 1 keeps the text people signed.
        versions = session.exec(select(LetterVersion).order_by(LetterVersion.number)).all()
        assert [(v.number, v.title) for v in versions] == [(1, "Test letter"), (2, "Better title")]
        assert letters[0].version == 2 and "letter file" in versions[1].note
    main(["import", str(path)])  # the same file again: nothing new
    with Session(engine) as session:
        assert len(session.exec(select(LetterVersion)).all()) == 2


def test_import_refuses_bad_files_with_a_message(cli_env, tmp_path, capsys):
    path = tmp_path / "bad.md"
    path.write_text("no front matter")
    with pytest.raises(SystemExit) as exit_:
        main(["import", str(path)])
    assert "front matter" in str(exit_.value.code)
    with pytest.raises(SystemExit) as exit_:
        main(["import", str(tmp_path / "missing.md")])
    assert "cannot read" in str(exit_.value.code)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("slug: test-letter", "slug: ../etc"), "slug"),
        (("slug: test-letter", "slug: Test Letter"), "slug"),
        (("status: published", "status: live"), "status"),
        (("  microsoft.com: Microsoft", "  microsoft.com.: Microsoft"), "domain"),
        (("  microsoft.com: Microsoft", "  microsoft.com: ''"), "organization"),
        (("title: Test letter", "title: ''"), "title"),
        (("\ndomains:\n", "\ndomains: []\nx:\n"), "domains"),
    ],
)
def test_letter_file_validation(change, message):
    with pytest.raises(LetterFileError, match=message):
        parse_letter(TEST_LETTER.replace(*change))


def test_the_demo_letter_is_valid():
    demo = parse_letter(DEMO_LETTER.read_text())
    assert demo.status == "published"
    assert {spec.domain for spec in demo.domains} == {"microsoft.com", "github.com", "linkedin.com"}


def test_migrate_command(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'new.db'}")
    monkeypatch.setenv("SECRET_KEY", SECRET)
    monkeypatch.chdir(tmp_path)
    main(["migrate"])
    assert "up to date" in capsys.readouterr().out
    assert (tmp_path / "new.db").exists()


def test_production_without_a_secret_key_refuses_to_start(monkeypatch, tmp_path):
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(["migrate"])
    assert "SECRET_KEY" in str(exit_.value.code)


def test_quoted_booleans_are_refused():
    with pytest.raises(LetterFileError, match="ask_title"):
        parse_letter(TEST_LETTER.replace("status: published", "status: published\nask_title: 'no'"))
    quoted = TEST_LETTER.replace("subdomains: true", 'subdomains: "false"')
    with pytest.raises(LetterFileError, match="subdomains"):
        parse_letter(quoted)


def _import(path, text, *extra):
    path.write_text(text)
    main(["import", str(path), *extra])


def test_importing_the_same_file_again_changes_nothing(cli_env, tmp_path, engine, capsys):
    path = tmp_path / "letter.md"
    _import(path, TEST_LETTER)
    with Session(engine) as session:
        before = session.exec(select(Letter)).one()
    capsys.readouterr()
    _import(path, TEST_LETTER)
    out = capsys.readouterr().out
    assert "is as the file says" in out and "changed:" not in out and "kept:" not in out
    with Session(engine) as session:
        after = session.exec(select(Letter)).one()
        assert (after.updated_at, after.version, after.status) == (
            before.updated_at,
            before.version,
            before.status,
        )


def test_import_never_reopens_a_closed_letter(cli_env, tmp_path, engine, capsys):
    path = tmp_path / "letter.md"
    _import(path, TEST_LETTER.replace("status: published", "status: closed"))
    with Session(engine) as session:
        closed_at = session.exec(select(Letter)).one().closed_at
    capsys.readouterr()
    _import(path, TEST_LETTER)
    out = capsys.readouterr().out
    assert "kept: status closed" in out and "never reopens" in out
    with Session(engine) as session:
        letter = session.exec(select(Letter)).one()
        assert (letter.status, letter.closed_at) == ("closed", closed_at)


def test_import_never_unpublishes(cli_env, tmp_path, engine, capsys):
    path = tmp_path / "letter.md"
    _import(path, TEST_LETTER)
    _import(path, TEST_LETTER.replace("status: published", "status: draft"))
    assert "kept: status published" in capsys.readouterr().out
    with Session(engine) as session:
        assert session.exec(select(Letter)).one().status == "published"


def test_import_adds_domains_to_a_published_letter_but_never_removes_or_changes_one(
    cli_env, tmp_path, engine, capsys
):
    path = tmp_path / "letter.md"
    _import(path, TEST_LETTER)
    capsys.readouterr()
    changed = (
        TEST_LETTER.replace("  github.com: GitHub\n", "  linkedin.com: LinkedIn\n")
        .replace("microsoft.com: Microsoft", "microsoft.com: Contoso")
        .replace("subdomains: true", "subdomains: false")
    )
    _import(path, changed)
    out = capsys.readouterr().out
    assert "changed: added linkedin.com (LinkedIn)" in out
    assert "kept: domain github.com (GitHub), not in the file" in out
    assert "kept: domain microsoft.com (Microsoft), changed in the file" in out
    assert "kept: domain corp.example (Example Corp), changed in the file" in out
    with Session(engine) as session:
        domains = session.exec(select(AllowedDomain)).all()
        assert {(d.domain, d.organization, d.include_subdomains) for d in domains} == {
            ("microsoft.com", "Microsoft", False),
            ("github.com", "GitHub", False),
            ("corp.example", "Example Corp", True),
            ("linkedin.com", "LinkedIn", False),
        }


def test_import_may_rewrite_a_drafts_domains_then_publish_it(cli_env, tmp_path, engine, capsys):
    path = tmp_path / "letter.md"
    draft = TEST_LETTER.replace("status: published", "status: draft")
    _import(path, draft)
    _import(path, draft.replace("  github.com: GitHub\n", "").replace("Microsoft", "MSFT"))
    out = capsys.readouterr().out
    assert "changed: removed github.com" in out and "changed: changed microsoft.com (MSFT)" in out
    _import(path, TEST_LETTER.replace("  github.com: GitHub\n", "").replace("Microsoft", "MSFT"))
    assert "changed: status: published" in capsys.readouterr().out
    with Session(engine) as session:
        letter = session.exec(select(Letter)).one()
        assert letter.status == "published" and letter.published_at is not None
        domains = session.exec(select(AllowedDomain)).all()
        assert {(d.domain, d.organization) for d in domains} == {
            ("microsoft.com", "MSFT"),
            ("corp.example", "Example Corp"),
        }


def test_import_closes_a_published_letter(cli_env, tmp_path, engine, capsys):
    path = tmp_path / "letter.md"
    _import(path, TEST_LETTER)
    _import(path, TEST_LETTER.replace("status: published", "status: closed"))
    assert "changed: status: closed" in capsys.readouterr().out
    with Session(engine) as session:
        letter = session.exec(select(Letter)).one()
        assert letter.status == "closed" and letter.closed_at is not None


def test_import_with_an_author_makes_them_owner_then_coauthor(cli_env, tmp_path, engine, capsys):
    path = tmp_path / "letter.md"
    _import(path, TEST_LETTER, "--author", "Owner@Example.org")
    assert "author: owner@example.org is now its owner" in capsys.readouterr().out
    _import(path, TEST_LETTER, "--author", "second@example.org")
    assert "second@example.org is now its coauthor" in capsys.readouterr().out
    _import(path, TEST_LETTER, "--author", "owner@example.org")
    assert "owner@example.org is already one of its authors" in capsys.readouterr().out
    with Session(engine) as session:
        rows = session.exec(
            select(Author.email, LetterAuthor.role).join(
                LetterAuthor, LetterAuthor.author_id == Author.id
            )
        ).all()
        assert sorted(rows) == [("owner@example.org", "owner"), ("second@example.org", "coauthor")]
        # The new accounts may run this letter, not start others.
        assert not any(a.can_create for a in session.exec(select(Author)).all())
        audit = session.exec(select(AuditEntry)).all()
        assert sorted(entry.detail for entry in audit) == [
            "owner@example.org (owner)",
            "second@example.org (coauthor)",
        ]


def test_import_with_a_bad_author_address_changes_nothing(cli_env, tmp_path, engine):
    path = tmp_path / "letter.md"
    path.write_text(TEST_LETTER)
    with pytest.raises(SystemExit) as exit_:
        main(["import", str(path), "--author", "not an address"])
    assert "--author" in str(exit_.value.code)
    with Session(engine) as session:
        assert session.exec(select(Letter)).all() == []
        assert session.exec(select(Author)).all() == []


def test_the_demo_is_loaded_once_and_then_left_as_its_authors_made_it(engine):
    first = load_demo(engine)
    assert first.created
    with Session(engine) as session:
        letter = session.exec(select(Letter).where(Letter.slug == first.letter.slug)).one()
        letter.status = LetterStatus.closed
        letter.closed_at = utcnow()
        session.add(letter)
        session.add(AllowedDomain(letter_id=letter.id, domain="example.com", organization="Ex"))
        session.commit()
    again = load_demo(engine)
    assert not again.created and not again.changes
    with Session(engine) as session:
        letter = session.exec(select(Letter).where(Letter.slug == first.letter.slug)).one()
        assert letter.status == "closed"
        domains = session.exec(select(AllowedDomain.domain)).all()
        assert sorted(domains) == ["example.com", "github.com", "linkedin.com", "microsoft.com"]


def test_serve_demo_twice_leaves_an_edited_demo_letter_as_it_was(database_url, engine, tmp_path):
    with running_server(database_url, tmp_path, "--demo") as server:
        assert "Demo letter loaded:" in server.log()
        with http_client(server.url) as client:
            assert client.get("/en/letters/microsoft-end-ice-contract").status_code == 200
    with Session(engine) as session:
        letter = session.exec(select(Letter)).one()
        letter.status = LetterStatus.closed
        letter.closed_at = utcnow()
        session.add(letter)
        session.add(AllowedDomain(letter_id=letter.id, domain="example.com", organization="Ex"))
        session.commit()
    with running_server(database_url, tmp_path, "--demo") as server:
        assert "Demo letter already here (closed), left as it is" in server.log()
    with Session(engine) as session:
        assert session.exec(select(Letter)).one().status == "closed"
        assert len(session.exec(select(AllowedDomain)).all()) == 4


def test_import_keeps_a_closed_letter_s_text(cli_env, tmp_path, engine, capsys):
    path = tmp_path / "letter.md"
    closed = TEST_LETTER.replace("status: published", "status: closed")
    _import(path, closed)
    _import(path, closed.replace("title: Test letter", "title: Another title"))
    assert "kept: the text: a closed letter's text does not change" in capsys.readouterr().out
    with Session(engine) as session:
        letter = session.exec(select(Letter)).one()
        assert (letter.title, letter.version) == ("Test letter", 1)
