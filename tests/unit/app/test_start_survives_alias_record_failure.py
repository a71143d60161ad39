"""Recording the keys KMS aliases named after an upgrade (domains.unreadable.record_aliased_keys)
is not worth failing a start for: a database error there (SQLite locked by another writer)
failed the server's start and every command. It is logged, and the server's background task
records them at its next run."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy.exc import OperationalError

from openprofiles import app
from openprofiles.settings import Settings


def test_a_failed_record_of_alias_keys_does_not_fail_the_start(
    sqlite_settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def locked(*_: object) -> None:
        raise OperationalError("UPDATE domain ...", {}, Exception("database is locked"))

    monkeypatch.setattr(app, "record_aliased_keys", locked)
    with caplog.at_level(logging.WARNING, logger="openprofiles.app"):
        services = app.build_services(sqlite_settings)
    try:
        with services.read() as tx:
            assert tx.conn is not None
    finally:
        services.database.dispose()
    [warning] = [r.getMessage() for r in caplog.records if "KMS aliases" in r.getMessage()]
    assert "OperationalError" in warning and "UPDATE" not in warning
