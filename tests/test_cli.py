"""The `letters` command."""

from __future__ import annotations

import pytest
from sqlmodel import Session, select

from letters.cli import main
from letters.importer import DEMO_LETTER, LetterFileError, parse_letter
from letters.models import AllowedDomain, Letter, LetterVersion
from tests.conftest import SECRET, TEST_LETTER


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
