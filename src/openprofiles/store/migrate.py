"""Bring a database's schema up to date with Alembic (run at server start and by the CLI)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from openprofiles.store.database import Database

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def upgrade_to_head(database: Database) -> None:
    upgrade_to(database, "head")


def upgrade_to(database: Database, revision: str) -> None:
    """Upgrade to `revision` (tests of a migration's data start from the one before it)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with database.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)
