"""Migrations build the schema from nothing and match the models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlmodel import SQLModel

from letters.db import make_sync_engine
from letters.migrate import alembic_config, upgrade
from tests.conftest import ON_POSTGRES, make_settings


def test_upgrade_head_on_an_empty_database_then_down_and_up(tmp_path, database_url):
    if ON_POSTGRES:
        settings = make_settings(database_url)
        from alembic import command

        command.downgrade(alembic_config(settings), "base")
        engine = make_sync_engine(settings)
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        engine.dispose()
    else:
        settings = make_settings(f"sqlite:///{tmp_path / 'empty.db'}")
    upgrade(settings)
    engine = make_sync_engine(settings)
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert {table.name for table in SQLModel.metadata.sorted_tables} <= tables


def test_models_and_migrations_do_not_drift(database_url):
    engine = make_sync_engine(make_settings(database_url))
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, SQLModel.metadata)
    engine.dispose()
    assert differences == []


def test_signatures_verified_before_the_ledger_get_entries_that_recount(tmp_path, database_url):
    from alembic import command
    from sqlalchemy import text

    from letters.record import ledger

    settings = make_settings(database_url if ON_POSTGRES else f"sqlite:///{tmp_path / 'before.db'}")
    config = alembic_config(settings)
    if ON_POSTGRES:
        command.downgrade(config, "base")
    command.upgrade(config, "4b3a171b43cc")  # the last revision without the ledger
    engine = make_sync_engine(settings)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO letter (id, slug, title, body, status, ask_title, created_at,"
                " updated_at, verified_count, named_count, hidden_count) VALUES (1, 'old',"
                " 'Old', 'Body', 'published', true, :now, :now, 3, 1, 2)"
            ),
            {"now": "2026-01-02T03:04:05+00:00"},
        )
        for number, (organization, shown) in enumerate(
            [("GitHub", True), ("GitHub", False), ("Microsoft", False)]
        ):
            connection.execute(
                text(
                    "INSERT INTO signature (letter_id, email_hash, domain, organization, name,"
                    " title, show_name, verified_at, updated_at) VALUES (1, :hash, 'x.com',"
                    " :organization, :name, '', :shown, :now, :now)"
                ),
                {
                    "hash": f"{number:064x}",
                    "organization": organization,
                    "name": f"Person {number}",
                    "shown": shown,
                    "now": "2026-01-02T03:04:05+00:00",
                },
            )
    engine.dispose()
    upgrade(settings)
    engine = make_sync_engine(settings)
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT seq, kind, day, organization, named, name, title, name_salt,"
                " name_digest, commitment, prev_hash AS prev, entry_hash AS hash"
                " FROM ledger_entry WHERE letter_id = 1 ORDER BY seq"
            )
        ).mappings()
        entries = [dict(row, named=bool(row["named"])) for row in rows]
        length, head = connection.execute(
            text("SELECT ledger_length, ledger_head FROM letter WHERE id = 1")
        ).one()
    engine.dispose()
    recount = ledger.verify(entries)
    assert (recount.verified, recount.named, recount.hidden) == (3, 1, 2)
    assert dict(recount.organizations) == {"GitHub": 2, "Microsoft": 1}
    assert (recount.length, recount.head) == (length, head) == (3, entries[-1]["hash"])
    assert entries[0]["name"] == "Person 0" and entries[1]["name"] == ""
    assert entries[0]["day"] == "2026-01-02"


def test_emails_queued_before_the_outbox_was_sealed_are_sealed_and_still_go(tmp_path, database_url):
    from alembic import command
    from sqlalchemy import text
    from sqlmodel import Session, select

    from letters.mail import outbox
    from letters.models import OutboxMessage

    settings = make_settings(database_url if ON_POSTGRES else f"sqlite:///{tmp_path / 'plain.db'}")
    config = alembic_config(settings)
    if ON_POSTGRES:
        command.downgrade(config, "base")
    command.upgrade(config, "7d3e5c1a9b20")  # the last revision with a plaintext outbox
    engine = make_sync_engine(settings)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO outbox_message (to_address, subject, text, html, created_at,"
                " next_attempt_at, attempts) VALUES ('waiting@example.org', 'Subject',"
                " 'the link', '<p>the link</p>', :now, :now, 0)"
            ),
            {"now": "2026-01-02T03:04:05+00:00"},
        )
    engine.dispose()
    command.upgrade(config, "head")
    engine = make_sync_engine(settings)
    with Session(engine) as session:
        [row] = session.exec(select(OutboxMessage)).all()
    engine.dispose()
    assert "waiting" not in row.sealed
    message = outbox.message_of(row, settings.keys)
    assert (message.to, message.text, message.attachments) == (
        "waiting@example.org",
        "the link",
        (),
    )


def test_hidden_and_pending_names_stored_in_clear_are_sealed_by_the_upgrade(tmp_path, database_url):
    from alembic import command
    from sqlalchemy import text
    from sqlmodel import Session, select

    from letters.models import PendingSignature, Signature
    from letters.record import names

    settings = make_settings(database_url if ON_POSTGRES else f"sqlite:///{tmp_path / 'names.db'}")
    config = alembic_config(settings)
    if ON_POSTGRES:
        command.downgrade(config, "base")
    command.upgrade(config, "b51e0c7a3f42")  # the last revision with names in clear
    now = {"now": "2026-01-02T03:04:05+00:00"}
    engine = make_sync_engine(settings)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO letter (id, slug, title, body, status, ask_title, created_at,"
                " updated_at, verified_count, named_count, hidden_count) VALUES (1, 'old',"
                " 'Old', 'Body', 'published', true, :now, :now, 2, 1, 1)"
            ),
            now,
        )
        for number, (name, shown) in enumerate([("Shown Person", True), ("Hidden Person", False)]):
            connection.execute(
                text(
                    "INSERT INTO signature (letter_id, email_hash, domain, organization, name,"
                    " title, show_name, commitment, verified_at, updated_at) VALUES (1, :hash,"
                    " 'x.com', 'X', :name, 'Role', :shown, :hash, :now, :now)"
                ),
                {"hash": f"{number:064x}", "name": name, "shown": shown, **now},
            )
        connection.execute(
            text(
                "INSERT INTO pending_signature (letter_id, email_hash, domain, organization,"
                " name, title, show_name, nonce_hash, created_at, expires_at) VALUES (1,"
                " :hash, 'x.com', 'X', 'Pending Person', '', false, :hash, :now, :now)"
            ),
            {"hash": "f" * 64, **now},
        )
    engine.dispose()
    command.upgrade(config, "head")
    engine = make_sync_engine(settings)
    with Session(engine) as session:
        shown, hidden = session.exec(select(Signature).order_by(Signature.id)).all()
        pending = session.exec(select(PendingSignature)).one()
    engine.dispose()
    assert (shown.name, shown.title, shown.sealed_name) == ("Shown Person", "Role", "")
    assert (hidden.name, hidden.title) == ("", "") and "Hidden" not in hidden.sealed_name
    assert names.of_signature(settings.keys, hidden) == ("Hidden Person", "Role")
    assert names.of_pending(settings.keys, pending) == ("Pending Person", "")
