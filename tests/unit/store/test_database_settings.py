"""The SQLite connection settings a Database applies to every connection it opens."""

from __future__ import annotations

from pathlib import Path

import pytest

from openprofiles.settings import BULK_SQLITE_CACHE_MIB, Settings
from openprofiles.store.database import Database


def _cache_kib(database: Database) -> int:
    with database.read() as conn:
        driver = conn.connection.driver_connection
        assert driver is not None
        return -int(driver.execute("PRAGMA cache_size").fetchone()[0])


def test_every_connection_gets_the_configured_page_cache(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, sqlite_cache_mib=48)
    database = Database.from_settings(settings)
    try:
        assert _cache_kib(database) == 48 * 1024
        # A second connection of the pool (the first is still checked out) gets it too.
        with database.read() as first:
            assert first is not None
            assert _cache_kib(database) == 48 * 1024
    finally:
        database.dispose()


def test_the_server_keeps_sqlites_own_cache_and_the_file_loaders_get_a_larger_one(
    tmp_path: Path,
) -> None:
    server = Database.from_settings(Settings(data_dir=tmp_path))
    loader = Database.from_settings(Settings(data_dir=tmp_path).for_bulk_load())
    try:
        assert _cache_kib(server) == 2000  # SQLite's own default: -2000, i.e. 2,000 KiB
        assert _cache_kib(loader) == BULK_SQLITE_CACHE_MIB * 1024
    finally:
        server.dispose()
        loader.dispose()


def test_the_cache_size_is_read_from_the_environment_and_wins_over_the_loaders() -> None:
    configured = Settings.from_env({"OPENPROFILES_SQLITE_CACHE_MIB": "256"})
    assert configured.sqlite_cache_mib == 256
    assert configured.for_bulk_load().sqlite_cache_mib == 256
    assert Settings.from_env({}).sqlite_cache_mib is None


@pytest.mark.parametrize("size", ["0", "-64"])
def test_a_cache_size_below_one_mib_is_refused_with_its_name(size: str) -> None:
    with pytest.raises(ValueError, match="OPENPROFILES_SQLITE_CACHE_MIB must be at least 1"):
        Settings.from_env({"OPENPROFILES_SQLITE_CACHE_MIB": size})


def _synchronous(database: Database) -> int:
    with database.read() as conn:
        driver = conn.connection.driver_connection
        assert driver is not None
        return int(driver.execute("PRAGMA synchronous").fetchone()[0])


@pytest.mark.parametrize(("given", "pragma"), [(None, 1), ("full", 2), ("FULL", 2), ("normal", 1)])
def test_every_connection_syncs_commits_as_configured(
    tmp_path: Path, given: str | None, pragma: int
) -> None:
    """NORMAL (1) unless the operator asks for FULL (2): a commit synced at once survives a
    power loss (Settings.sqlite_synchronous); the file loaders keep the server's choice."""
    environ = {"OPENPROFILES_DATA_DIR": str(tmp_path)}
    if given is not None:
        environ["OPENPROFILES_SQLITE_SYNCHRONOUS"] = given
    settings = Settings.from_env(environ)
    for database in (
        Database.from_settings(settings),
        Database.from_settings(settings.for_bulk_load()),
    ):
        try:
            assert _synchronous(database) == pragma
            with database.read() as first:  # a second connection of the pool too
                assert first is not None
                assert _synchronous(database) == pragma
        finally:
            database.dispose()


@pytest.mark.parametrize("mode", ["off", "extra", "2", "full;"])
def test_an_unknown_synchronous_mode_is_refused_with_its_name(mode: str) -> None:
    with pytest.raises(
        ValueError, match="OPENPROFILES_SQLITE_SYNCHRONOUS must be one of full, normal"
    ):
        Settings.from_env({"OPENPROFILES_SQLITE_SYNCHRONOUS": mode})


def test_the_sqlite_files_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    """They hold web users' password hashes; found world-readable (0644) when the data dir
    existed beforehand (an audit)."""
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    settings = Settings(data_dir=data)
    database = Database.from_settings(settings)
    try:
        with database.write() as conn:
            conn.exec_driver_sql("CREATE TABLE t (x)")
            conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        files = [settings.sqlite_path, Path(f"{settings.sqlite_path}-wal")]
        assert [f.stat().st_mode & 0o777 for f in files] == [0o600, 0o600]
    finally:
        database.dispose()
    # A file made earlier with the umask's permissions loses others' access at the next start.
    settings.sqlite_path.chmod(0o644)
    Database.from_settings(settings).dispose()
    assert settings.sqlite_path.stat().st_mode & 0o777 == 0o600
