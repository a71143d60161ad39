"""A web session unused for an hour ends (users.SESSION_IDLE); one in use goes on, its last
activity recorded at most once a minute. On SQLite and PostgreSQL, through TestClient."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select, update
from starlette.testclient import TestClient
from tests.unit.ui.test_ui_sessions import PASSWORD, sign_in

from openprofiles.app import create_app
from openprofiles.settings import Settings
from openprofiles.store.schema import web_session
from openprofiles.users import service as users


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings)
    with app.state.services.write() as tx:
        users.create_user(tx, username="ana", password=PASSWORD, role="agent")
    with TestClient(app, follow_redirects=False) as test_client:
        yield test_client
    app.state.services.database.dispose()


def _set_last_seen(client: TestClient, ago: timedelta) -> None:
    services = client.app.state.services  # type: ignore[attr-defined]
    with services.write() as tx:
        tx.conn.execute(update(web_session).values(last_seen_at=tx.now - ago))


def _last_seen_ago(client: TestClient) -> timedelta:
    services = client.app.state.services  # type: ignore[attr-defined]
    with services.read() as tx:
        return tx.now - tx.conn.execute(select(web_session.c.last_seen_at)).scalar_one()


def test_a_session_unused_for_an_hour_ends(client: TestClient) -> None:
    """It lasted twelve hours whatever happened: a desk left unattended kept customers' data
    open until the end of the shift."""
    sign_in(client, "ana")
    assert client.get("/agent/").status_code == 200
    _set_last_seen(client, users.SESSION_IDLE + timedelta(seconds=1))
    refused = client.get("/agent/")
    assert refused.status_code == 303 and refused.headers["location"].startswith("/ui/sign-in")


def test_a_session_in_use_goes_on_and_is_touched_at_most_once_a_minute(
    client: TestClient,
) -> None:
    sign_in(client, "ana")
    _set_last_seen(client, users.SESSION_IDLE - timedelta(minutes=1))
    assert client.get("/agent/").status_code == 200
    assert _last_seen_ago(client) < users.TOUCH_EVERY
    # Within the minute, a request records nothing.
    _set_last_seen(client, users.TOUCH_EVERY / 2)
    assert client.get("/agent/").status_code == 200
    assert _last_seen_ago(client) >= users.TOUCH_EVERY / 2
    # An hour after the last touch, it has ended.
    _set_last_seen(client, users.SESSION_IDLE)
    assert client.get("/agent/").status_code == 303
