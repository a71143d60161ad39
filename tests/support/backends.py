"""Databases for tests: a fresh SQLite file, or a fresh schema in the PostgreSQL server named by
OPENPROFILES_TEST_DATABASE_URL. In CI (CI=true) a missing PostgreSQL fails the run."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import create_engine, text

POSTGRES_ENV = "OPENPROFILES_TEST_DATABASE_URL"


def postgres_base_url() -> str:
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        if os.environ.get("CI"):
            pytest.fail(f"{POSTGRES_ENV} is not set, and CI requires the PostgreSQL tests")
        pytest.skip(f"{POSTGRES_ENV} is not set")
    return url


def _psycopg(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


@contextmanager
def postgres_schema_url() -> Iterator[str]:
    """A URL whose connections use a new, empty schema; the schema is dropped afterwards."""
    base = postgres_base_url()
    schema = f"optest_{uuid.uuid4().hex[:12]}"
    admin = create_engine(_psycopg(base))
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in base else "?"
    try:
        yield f"{base}{separator}options={quote(f'-csearch_path={schema}')}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@contextmanager
def database_url_for(backend: str, tmp_path: Path) -> Iterator[str | None]:
    """None (the embedded SQLite default in the data dir) or a PostgreSQL schema URL."""
    if backend == "sqlite":
        yield None
    else:
        with postgres_schema_url() as url:
            yield url
