"""Migration 0023 on both databases: the sign-in throttle's table comes and goes with it, and a
database taken back to 0022 and up again counts failed sign-ins afresh."""

from __future__ import annotations

from sqlalchemy import inspect

from openprofiles.app import build_services
from openprofiles.settings import Settings
from openprofiles.store.migrate import downgrade_to
from openprofiles.users import service as users


def test_0023_adds_and_drops_the_signin_throttle(settings: Settings) -> None:
    services = build_services(settings)
    try:
        with services.write() as tx:
            users.create_user(tx, username="ana", password="long enough", role="agent")
            assert users.sign_in(tx, username="ana", password="wrong one!", address="::1") is None
        downgrade_to(services.database, "0022", services.keys)
        with services.database.engine.connect() as conn:
            assert "signin_throttle" not in inspect(conn).get_table_names()
    finally:
        services.database.dispose()
    services = build_services(settings)  # upgrades to head again
    try:
        with services.write() as tx:
            assert users.sign_in(tx, username="ana", password="long enough", address="::1")
        with services.database.engine.connect() as conn:
            assert "signin_throttle" in inspect(conn).get_table_names()
    finally:
        services.database.dispose()
