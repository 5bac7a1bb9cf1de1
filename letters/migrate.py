"""Run Alembic migrations from code (the `letters migrate` command and the tests)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from letters.resources import ALEMBIC_INI, MIGRATIONS
from letters.settings import Settings


def alembic_config(settings: Settings) -> Config:
    config = Config(str(ALEMBIC_INI))
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["settings"] = settings
    config.attributes["configure_logger"] = False
    return config


def upgrade(settings: Settings, revision: str = "head") -> None:
    command.upgrade(alembic_config(settings), revision)
