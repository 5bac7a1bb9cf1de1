"""Settings from the environment."""

from __future__ import annotations

import re

import pytest

from letters.settings import PROJECT_ROOT, Settings, normalize_database_url, parse_smtp_url


def make(**values):
    return Settings(_env_file=None, **values)


def test_database_urls_are_accepted_as_people_write_them():
    assert normalize_database_url("postgres://u:p@h/db") == "postgresql+psycopg://u:p@h/db"
    assert normalize_database_url("postgresql://u@h:5432/db") == "postgresql+psycopg://u@h:5432/db"
    assert normalize_database_url("sqlite:///x.db") == "sqlite:///x.db"
    settings = make(database_url="postgres://u@h/db", secret_key="k" * 40)
    assert settings.async_database_url == "postgresql+psycopg://u@h/db"


def test_the_default_database_is_a_sqlite_file_in_the_instance_folder(tmp_path):
    settings = make(instance_path=tmp_path)
    assert settings.database_url == f"sqlite:///{tmp_path / 'letters.db'}"
    assert settings.async_database_url.startswith("sqlite+aiosqlite:///")


def test_development_creates_and_keeps_a_secret_key(tmp_path):
    first = make(instance_path=tmp_path).secret_key
    assert len(first) >= 32
    assert make(instance_path=tmp_path).secret_key == first
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_production_refuses_to_start_without_a_real_secret_key(tmp_path):
    with pytest.raises(ValueError, match="SECRET_KEY"):
        make(environment="production", instance_path=tmp_path)
    with pytest.raises(ValueError, match="SECRET_KEY"):
        make(environment="production", secret_key="changeme", instance_path=tmp_path)
    assert not (tmp_path / "secret_key").exists()
    with pytest.raises(ValueError, match="SMTP_URL"):
        make(environment="production", secret_key="s" * 40)
    production = make(environment="production", secret_key="s" * 40, smtp_url="smtp://mail:25")
    assert production.secret_key == "s" * 40


def test_production_refuses_a_key_file_beside_the_sqlite_database(tmp_path):
    make(instance_path=tmp_path)  # development: the key is created beside letters.db
    production = {"environment": "production", "secret_key": "s" * 40, "smtp_url": "smtp://m:25"}
    with pytest.raises(ValueError, match="sits beside the database"):
        make(instance_path=tmp_path, **production)
    (tmp_path / "secret_key").unlink()
    assert make(instance_path=tmp_path, **production).secret_key == "s" * 40
    # PostgreSQL: the instance folder holds no data.
    (tmp_path / "secret_key").write_text("k" * 40)
    make(instance_path=tmp_path, database_url="postgresql://db/letters", **production)


def test_settings_come_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("BASE_URL", "https://letters.example/")
    monkeypatch.setenv("LINK_MAX_AGE", "600")
    monkeypatch.setenv("SECRET_KEY", "e" * 40)
    settings = make()
    assert settings.base_url == "https://letters.example"
    assert settings.link_max_age == 600


def test_smtp_urls():
    plain = parse_smtp_url("smtp://mail.example:2525")
    assert (plain.host, plain.port, plain.use_tls, plain.start_tls) == (
        "mail.example",
        2525,
        False,
        None,
    )
    secure = parse_smtp_url("smtps://user%40x:p%3Ass@mail.example")
    assert (secure.port, secure.use_tls, secure.username, secure.password) == (
        465,
        True,
        "user@x",
        "p:ss",
    )
    assert parse_smtp_url("smtp://h:587?starttls=require").start_tls is True
    assert parse_smtp_url("smtp://h?starttls=off").start_tls is False
    for bad in ["http://h", "smtp://", "smtp://h?starttls=sometimes"]:
        with pytest.raises(ValueError):
            parse_smtp_url(bad)


def test_readme_documents_every_setting():
    readme = (PROJECT_ROOT / "README.md").read_text()
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", readme, re.MULTILINE))
    expected = {name.upper() for name in Settings.model_fields}
    assert expected - documented == set(), "settings missing from the README table"
    assert documented - expected == set(), "README documents settings that do not exist"
