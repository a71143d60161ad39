"""What UpdateProfile keeps in a profile's sealed record, on real databases (SQLite and
PostgreSQL): a path named with "" that held no value leaves no trace; the fields a person
cleared, kept so that ingestion does not fill them again, count to the profile's size, so the
record stays bounded; a value removed or replaced asks for SQLite's log to be emptied
(`Tx.erased`); EngagementPreferences change list by list."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from openprofiles.app import build_services
from openprofiles.context import Principal, RequestContext, Services
from openprofiles.domains.handlers import create_domain
from openprofiles.profiles import service
from openprofiles.profiles.size import MAX_PROFILE_BYTES, ProfileTooLarge, profile_size
from openprofiles.settings import Settings
from openprofiles.store.schema import profile

DOMAIN = "sealed"


def make_domain(services: Services) -> str:
    create_domain(
        RequestContext(services=services, principal=Principal("t", "admin")),
        {"DomainName": DOMAIN, "DefaultExpirationDays": 5},
    )
    return DOMAIN


@pytest.fixture
def domain(services: Services) -> str:
    return make_domain(services)


def create(services: Services, **fields: object) -> str:
    with services.write() as tx:
        return service.create_profile(tx, domain_name=DOMAIN, fields=fields).profile_id


def update(services: Services, profile_id: str, **changes: object) -> None:
    with services.write() as tx:
        service.update_profile(tx, domain_name=DOMAIN, profile_id=profile_id, changes=changes)


def stored(services: Services, profile_id: str) -> service.ProfileRecord:
    with services.read() as tx:
        return service.get_profile(tx, domain_name=DOMAIN, profile_id=profile_id)


def sealed(services: Services, profile_id: str) -> bytes:
    with services.read() as tx:
        return bytes(
            tx.conn.execute(
                select(profile.c.sealed).where(profile.c.profile_id == profile_id)
            ).scalar_one()
        )


def test_clearing_what_held_no_value_leaves_no_trace(services: Services, domain: str) -> None:
    pid = create(services, FirstName="Ada", Attributes={"tier": "gold"})
    size = len(sealed(services, pid))
    update(
        services,
        pid,
        LastName="",
        Address={"City": ""},
        Attributes={f"ghost-{i:04d}-" + "k" * 200: "" for i in range(200)},
    )
    record = stored(services, pid)
    assert record.manual_fields == {"FirstName", "Attributes.tier"}
    assert record.fields == {"FirstName": "Ada", "Attributes": {"tier": "gold"}}
    assert len(sealed(services, pid)) <= size + 64  # nothing of the 200 names (~45 KB)


def test_a_cleared_value_stays_protected_and_counts(services: Services, domain: str) -> None:
    pid = create(services, FirstName="Ada", Attributes={"tier": "gold"})
    update(services, pid, FirstName="", Attributes={"tier": ""})
    record = stored(services, pid)
    assert record.fields == {}
    assert record.manual_fields == {"Attributes.tier", "FirstName"}
    assert profile_size(record) == len(f'{{"ProfileId":"{pid}"}}["Attributes.tier","FirstName"]')


def names(prefix: str, count: int) -> dict[str, str]:
    return {f"{prefix}-{i:04d}-" + "n" * 180: "v" for i in range(count)}


def test_cleared_fields_keep_the_record_bounded(services: Services, domain: str) -> None:
    """Each round sets ~140 KB of attributes and clears them: the names cleared stay (kept
    from ingestion) and count, so the second round's values do not fit beside the first's
    names, and the record never holds more than the limit."""
    pid = create(services, FirstName="Ada")
    first = names("a", 700)
    update(services, pid, Attributes=first)
    update(services, pid, Attributes=dict.fromkeys(first, ""))
    cleared = stored(services, pid)
    with pytest.raises(ProfileTooLarge):
        update(services, pid, Attributes=names("b", 700))
    assert len(cleared.manual_fields) == 701
    assert profile_size(cleared) > 100_000
    after = stored(services, pid)
    assert after.version == cleared.version
    assert profile_size(after) <= MAX_PROFILE_BYTES
    assert len(sealed(services, pid)) < MAX_PROFILE_BYTES + 4096


def count_erasures(services: Services, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    truncate = services.database.request_truncate
    monkeypatch.setattr(
        services.database, "request_truncate", lambda: (calls.append(1), truncate())[1]
    )
    return calls


@pytest.mark.parametrize(
    ("changes", "erases"),
    [
        ({"EmailAddress": ""}, True),
        ({"FirstName": "Bea"}, True),
        ({"Address": {"City": ""}}, True),
        ({"Attributes": {"tier": "silver"}}, True),
        ({"LastName": "Lovelace", "Attributes": {"new": "x"}}, False),
        ({"FirstName": "Ada", "Attributes": {"ghost": ""}}, False),
    ],
)
def test_removing_or_replacing_a_value_is_an_erasure(
    services: Services,
    domain: str,
    monkeypatch: pytest.MonkeyPatch,
    changes: dict[str, object],
    erases: bool,
) -> None:
    pid = create(
        services,
        FirstName="Ada",
        EmailAddress="ada@example.org",
        Address={"City": "London", "Country": "UK"},
        Attributes={"tier": "gold"},
    )
    calls = count_erasures(services, monkeypatch)
    update(services, pid, **changes)
    assert bool(calls) is erases


def _files(settings: Settings) -> dict[str, bytes]:
    path = settings.sqlite_path
    wal = Path(f"{path}-wal")
    return {"database": path.read_bytes(), "wal": wal.read_bytes() if wal.exists() else b""}


def _wait(services: Services, done: Callable[[], bool]) -> bool:
    checkpointer = services.database.checkpointer
    assert checkpointer is not None
    return checkpointer.wait_for(done, timeout=20)


def test_a_cleared_email_leaves_the_sqlite_files(sqlite_settings: Settings) -> None:
    """The profile's sealed blob from before UpdateProfile cleared its email, and the email's
    derived key row, are in neither file once the update has committed."""
    services = build_services(sqlite_settings)
    try:
        make_domain(services)
        pid = create(services, FirstName="Ada", EmailAddress="ada.erased@example.org")
        old = sealed(services, pid)
        assert old in _files(sqlite_settings)["wal"]
        update(services, pid, EmailAddress="")
        assert _wait(
            services,
            lambda: not any(old in content for content in _files(sqlite_settings).values()),
        ), "the sealed profile from before the update is still in the files"
    finally:
        services.database.dispose()


def test_engagement_preferences_change_list_by_list(services: Services, domain: str) -> None:
    phone = [{"KeyName": "_phone", "KeyValue": "+12065550100", "ContactType": "PhoneNumber"}]
    email = [{"KeyName": "_email", "KeyValue": "a@x.com", "ContactType": "EmailAddress"}]
    pid = create(services, FirstName="Ada", EngagementPreferences={"Phone": phone, "Email": email})
    mobile = [{"KeyName": "_phone", "KeyValue": "+12065550101", "ContactType": "MobilePhoneNumber"}]
    update(services, pid, EngagementPreferences={"Phone": mobile})
    assert stored(services, pid).fields["EngagementPreferences"] == {
        "Phone": mobile,
        "Email": email,
    }
    update(services, pid, EngagementPreferences={"Phone": []})
    assert stored(services, pid).fields["EngagementPreferences"] == {"Email": email}
    update(services, pid, EngagementPreferences={"Email": []})
    assert "EngagementPreferences" not in stored(services, pid).fields
