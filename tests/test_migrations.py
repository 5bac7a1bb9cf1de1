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
