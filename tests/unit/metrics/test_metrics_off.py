"""OPENPROFILES_METRICS=off turns GET /metrics off (Settings.metrics): the scrape answers 404, and
no scrape reads the database's state (metrics.state). On by default. Through the real app."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import event
from starlette.testclient import TestClient

from openprofiles.app import create_app
from openprofiles.settings import Settings


def _scrape(settings: Settings) -> tuple[int, list[str]]:
    """The status of GET /metrics on an app of `settings`, and the statements it ran."""
    app = create_app(settings)
    services = app.state.services
    statements: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    event.listen(services.database.engine, "before_cursor_execute", record)
    try:
        with TestClient(app) as client:
            # The background tasks read at start-up: only the scrape's statements count.
            statements.clear()
            status = client.get("/metrics").status_code
    finally:
        event.remove(services.database.engine, "before_cursor_execute", record)
        services.database.dispose()
    return status, statements


def _state_reads(statements: list[str]) -> list[str]:
    # The state gauges' grouped counts (dead letters, kept contact records).
    return [s for s in statements if "count(" in s.lower()]


def test_metrics_are_served_by_default(settings: Settings) -> None:
    status, statements = _scrape(settings)
    assert status == 200
    assert _state_reads(statements)


def test_metrics_off_answers_404_and_reads_nothing(settings: Settings) -> None:
    status, statements = _scrape(dataclasses.replace(settings, metrics=False))
    assert status == 404
    assert _state_reads(statements) == []


@pytest.mark.parametrize(
    ("value", "on"), [("off", False), ("OFF", False), ("on", True), ("", True)]
)
def test_the_variable_turns_them_on_or_off(value: str, on: bool) -> None:
    assert Settings.from_env({"OPENPROFILES_METRICS": value}).metrics is on


def test_another_value_is_refused_with_the_variable_named() -> None:
    with pytest.raises(ValueError, match="OPENPROFILES_METRICS must be on or off, not 'no'"):
        Settings.from_env({"OPENPROFILES_METRICS": "no"})
