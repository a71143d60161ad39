"""Fixtures shared by every test tier."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.backends import database_url_for
from tests.support.moto_server import moto_installed, start_moto_server
from tests.support.server import LiveServer, run_server

from openprofiles.app import build_services
from openprofiles.context import Services
from openprofiles.settings import Settings

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    """Settings on a fresh database: every test that takes it runs on SQLite and PostgreSQL."""
    with database_url_for(request.param, tmp_path) as url:
        yield Settings(data_dir=tmp_path / "data", database_url=url)


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    built = build_services(settings)
    try:
        yield built
    finally:
        built.database.dispose()


@pytest.fixture(scope="module", params=BACKENDS)
def live_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """One live server per test module and backend. Its matching scheduler is off, so no job
    starts on its own while a test counts jobs (schedule tests pass the time themselves)."""
    tmp = tmp_path_factory.mktemp("server")
    with database_url_for(request.param, tmp) as url:
        settings = Settings(
            data_dir=tmp / "data",
            database_url=url,
            matching_schedule_check_seconds=0,
            # A scrape of /metrics reads the database's state at once, not once in 15 s.
            metrics_state_seconds=0,
        )
        with run_server(settings) as server:
            yield server


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """A moto server (emulated KMS, SQS, S3, Kinesis) for the whole session.

    In CI a missing moto is a failure, never a skip: a skipped backend is an untested backend.
    """
    if not moto_installed():
        if os.environ.get("CI"):
            pytest.fail("moto[server] is not installed, and CI requires the moto-backed tests")
        pytest.skip("moto[server] is not installed")
    url, stop = start_moto_server()
    try:
        yield url
    finally:
        stop()
