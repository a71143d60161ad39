"""Bring a database's schema up to date with Alembic (run at server start and by the CLI).

A migration that seals data already stored (0018) needs the domains' keys: the key manager is
handed to it in the Alembic config's attributes (`keys`). Without one, such a migration runs as
long as it has nothing to seal (an empty database), and stops saying so otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from alembic import command
from alembic.config import Config

from openprofiles.store.database import Database

if TYPE_CHECKING:
    from openprofiles.crypto.domain_keys import KeyManager

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def upgrade_to_head(database: Database, keys: KeyManager | None = None) -> None:
    upgrade_to(database, "head", keys)


def upgrade_to(database: Database, revision: str, keys: KeyManager | None = None) -> None:
    """Upgrade to `revision` (tests of a migration's data start from the one before it)."""
    _run(database, keys, lambda config: command.upgrade(config, revision))


def downgrade_to(database: Database, revision: str, keys: KeyManager | None = None) -> None:
    """Downgrade to `revision` (tests of a migration's downgrade)."""
    _run(database, keys, lambda config: command.downgrade(config, revision))


def _run(database: Database, keys: KeyManager | None, action: Callable[[Config], None]) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["keys"] = keys
    with database.engine.begin() as conn:
        config.attributes["connection"] = conn
        action(config)
