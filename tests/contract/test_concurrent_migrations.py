"""Processes that start together on a fresh database all bring it up to date: the upgrade runs
alone (store.migrate), where before all but one failed — on PostgreSQL with `duplicate key value
violates unique constraint "pg_type_typname_nsp_index"`, on SQLite with "database is locked"."""

from __future__ import annotations

import subprocess
import sys

from sqlalchemy import text

from openprofiles.settings import Settings
from openprofiles.store.database import Database
from openprofiles.store.migrate import head_revision

STARTING = 4


# A process that opens the database, says it is ready, and upgrades it when told to go.
_CHILD = """
import sys
from openprofiles.store.database import Database
from openprofiles.store.migrate import upgrade_to_head

database = Database(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
try:
    upgrade_to_head(database)
finally:
    database.dispose()
print("migrated", flush=True)
"""


def _error(stderr: str) -> str:
    """The line of a child's traceback that says what failed."""
    lines = stderr.strip().splitlines()
    return next((line for line in reversed(lines) if "Error" in line), lines[-1] if lines else "")


def test_processes_starting_together_all_migrate_a_fresh_database(settings: Settings) -> None:
    url = settings.effective_database_url
    if settings.is_sqlite:
        settings.data_dir.mkdir(parents=True)
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(STARTING)
    ]
    try:
        for child in children:
            assert child.stdout is not None
            assert child.stdout.readline() == "ready\n"
        for child in children:  # all at once
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        outcomes = [child.communicate(timeout=300) for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    failed = [
        _error(err) for (_out, err), c in zip(outcomes, children, strict=True) if c.returncode
    ]
    assert failed == []
    assert [out for out, _err in outcomes] == ["migrated\n"] * STARTING
    database = Database(url)
    try:
        with database.read() as conn:
            versions = conn.execute(text("SELECT version_num FROM alembic_version")).all()
            domains = conn.execute(text("SELECT count(*) FROM domain")).scalar_one()
    finally:
        database.dispose()
    assert [v for (v,) in versions] == [head_revision()]
    assert domains == 0
