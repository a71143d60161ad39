"""Migration 0022 on both databases: the contact records stored before it get their contact's
start (read with the domain's key), so they are listed newest contact first at once; a key that
cannot be used stops the upgrade, naming the domain, with nothing changed."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text
from tests.unit.integrations.integ_helpers import associate, ctr, make_domain, send

from openprofiles.app import build_services
from openprofiles.contacts.history import contact_history
from openprofiles.crypto.errors import KeyUnusable
from openprofiles.crypto.keyring import Keyring
from openprofiles.profiles.service import SearchCriterion, search_profiles
from openprofiles.settings import Settings
from openprofiles.store.migrate import downgrade_to, upgrade_to_head


def _stored_before_0022(settings: Settings, key: str | None = None) -> str:
    """A domain with contacts of Jan 3, Jan 1 and Jan 2 stored in that order, the database then
    taken back to 0021 (no start column); the profile's id."""
    services = build_services(settings)
    try:
        make_domain(services, "d1", key)
        associate(services, "d1")
        for contact_id, day in (("c1-2", 3), ("c1-0", 1), ("c1-1", 2)):
            send(services, ctr(contact_id, start=f"2026-01-0{day}T09:00:00Z"))
        with services.read() as tx:
            [(found, _)] = search_profiles(
                tx, domain_name="d1", criteria=[SearchCriterion("_ctrContactId", ("c1-0",))]
            )[0]
        downgrade_to(services.database, "0021", services.keys)
    finally:
        services.database.dispose()
    return found.profile_id


def test_0022_gives_stored_contact_records_their_start(settings: Settings) -> None:
    profile_id = _stored_before_0022(settings)
    services = build_services(settings)  # upgrades to head, with the key manager
    try:
        with services.read() as tx:
            contacts = contact_history(tx, domain_name="d1", profile_id=profile_id).contacts
            starts = tx.conn.execute(
                text("SELECT contact_start FROM profile_object WHERE object_type_name = 'CTR'")
            ).scalars()
            assert all(s is not None for s in starts)
    finally:
        services.database.dispose()
    assert [c.contact_id for c in contacts] == ["c1-2", "c1-1", "c1-0"]


def test_0022_with_a_disabled_key_stops_naming_the_domain_and_changes_nothing(
    settings: Settings,
) -> None:
    keyring = Keyring(settings.keyring_path)
    key = keyring.create_key("keyed")
    _stored_before_0022(settings, key.arn(settings.region, settings.account_id))
    keyring.disable(key.key_id)
    services = build_services(settings, migrate=False)
    try:
        with pytest.raises(KeyUnusable) as exc:
            upgrade_to_head(services.database, services.keys)
        assert "domain d1" in exc.value.message and "disabled" in exc.value.message
        with services.database.engine.connect() as conn:
            columns = {c["name"] for c in inspect(conn).get_columns("profile_object")}
            version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    finally:
        services.database.dispose()
    assert "contact_start" not in columns and version == "0021"


def test_0022_downgrade_keeps_every_objects_keys(settings: Settings) -> None:
    """On SQLite the downgrade rebuilt profile_object, and dropping the old table with foreign
    keys on deleted every profile_object_key row (ON DELETE CASCADE)."""
    services = build_services(settings)
    count = text("SELECT count(*) FROM profile_object_key")
    try:
        make_domain(services, "d1")
        associate(services, "d1")
        send(services, ctr("c1", start="2026-01-01T09:00:00Z"))
        with services.read() as tx:
            before = tx.conn.execute(count).scalar_one()
        downgrade_to(services.database, "0021", services.keys)
        with services.database.engine.connect() as conn:
            after = conn.execute(count).scalar_one()
            columns = {c["name"] for c in inspect(conn).get_columns("profile_object")}
    finally:
        services.database.dispose()
    assert before > 0 and after == before
    assert "contact_start" not in columns


def test_0022_fills_every_batch(settings: Settings) -> None:
    """The start is filled a batch of 500 objects at a time, in digest order: every stored
    contact record gets it, however many batches they take."""
    services = build_services(settings)
    callers = [f"+1720840{n:04d}" for n in range(25)]
    try:
        make_domain(services, "d1")
        associate(services, "d1")
        send(
            services,
            *(
                ctr(
                    f"c-{n}",
                    address=callers[n % 25],
                    start=f"2026-01-01T{n // 60 % 24:02d}:{n % 60:02d}:00Z",
                )
                for n in range(1234)
            ),
        )
        downgrade_to(services.database, "0021", services.keys)
    finally:
        services.database.dispose()
    services = build_services(settings)
    try:
        with services.read() as tx:
            starts = (
                tx.conn.execute(
                    text("SELECT contact_start FROM profile_object WHERE object_type_name = 'CTR'")
                )
                .scalars()
                .all()
            )
            [(found, _)] = search_profiles(
                tx, domain_name="d1", criteria=[SearchCriterion("_phone", (callers[0],))]
            )[0]
            history = contact_history(tx, domain_name="d1", profile_id=found.profile_id)
    finally:
        services.database.dispose()
    assert len(starts) == 1234 and all(s is not None for s in starts)
    expected = [f"c-{n}" for n in range(1234) if n % 25 == 0][::-1]
    assert [c.contact_id for c in history.contacts] == expected[: len(history.contacts)]
