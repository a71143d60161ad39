"""The Alembic migrations build exactly the schema the code declares, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from openprofiles.store.database import Database
from openprofiles.store.migrate import upgrade_to_head
from openprofiles.store.schema import metadata


def test_migrations_match_the_declared_schema(settings):
    database = Database.from_settings(settings)
    try:
        upgrade_to_head(database)
        upgrade_to_head(database)  # a second run is a no-op
        with database.engine.connect() as conn:
            differences = compare_metadata(MigrationContext.configure(conn), metadata)
    finally:
        database.dispose()
    assert differences == [], "store/schema and the migrations disagree: add a migration"
