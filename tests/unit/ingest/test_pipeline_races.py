"""Ingestion racing other writers of the same data on PostgreSQL (several server processes): the
second writer waits for the first and then works from what the first committed. Each test keeps
the first writer's transaction open until the second waits for one of its locks (or finishes
without waiting, which is how each race went wrong before the writers locked)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from tests.support.backends import postgres_schema_url
from tests.support.lock_waits import second_writer_meets_first

from openprofiles.app import build_services
from openprofiles.context import Services, Tx
from openprofiles.errors import NotFound
from openprofiles.ingest.pipeline import IngestResult, ingest_object
from openprofiles.object_types.service import delete_object_type
from openprofiles.objects.service import list_profile_objects
from openprofiles.profiles.service import delete_profile, find_profile, update_profile
from openprofiles.settings import Settings
from openprofiles.store.schema import object_type, profile_key, profile_object

from .conftest import DOMAIN, crm_type, make_domain, put_type

pytestmark = pytest.mark.postgres

# Objects of Crm are applied by the batched path (`_Run`), objects of Registration, which write
# a standard object (`_asset`), one by one (`_apply`): each race is run through both.
TYPES = ["Crm", "Registration"]
# A template name: an object type that exists without a definition, and has no row until used.
IMPLICIT = "Salesforce-Contact"


def crm_with_phone() -> dict[str, Any]:
    definition = crm_type()
    definition["Fields"]["phone"] = {
        "Source": "_source.phone",
        "Target": "_profile.PhoneNumber",
        "ContentType": "PHONE_NUMBER",
    }
    definition["Keys"]["_phone"] = [{"StandardIdentifiers": ["PROFILE"], "FieldNames": ["phone"]}]
    return definition


def registration_type() -> dict[str, Any]:
    return {
        "AllowProfileCreation": True,
        "Fields": {
            "sn": {"Source": "_source.sn", "Target": "_asset.SerialNumber"},
            "email": {
                "Source": "_source.email",
                "Target": "_profile.EmailAddress",
                "ContentType": "EMAIL_ADDRESS",
            },
            "first": {"Source": "_source.first", "Target": "_profile.FirstName"},
        },
        "Keys": {
            "productSerialNumber": [
                {"StandardIdentifiers": ["ASSET", "UNIQUE"], "FieldNames": ["sn"]}
            ],
            "_email": [{"StandardIdentifiers": ["PROFILE"], "FieldNames": ["email"]}],
        },
    }


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[Services]:
    with postgres_schema_url() as url:
        services = build_services(Settings(data_dir=tmp_path / "data", database_url=url))
        try:
            make_domain(services)
            put_type(services, "Crm", crm_with_phone())
            put_type(services, "Registration", registration_type())
            yield services
        finally:
            services.database.dispose()


def put(tx: Tx, type_name: str, **obj: Any) -> IngestResult:
    return ingest_object(
        tx, domain_name=DOMAIN, object_type_name=type_name, source=obj, raw=json.dumps(obj)
    )


def put_now(services: Services, type_name: str, **obj: Any) -> IngestResult:
    with services.write() as tx:
        return put(tx, type_name, **obj)


def by_email(type_name: str, first: str) -> dict[str, Any]:
    """An object of `type_name` for ada@example.com that sets her FirstName."""
    if type_name == "Crm":
        return {"id": "crm-email", "email": "ada@example.com", "first": first}
    return {"sn": "SN-1", "email": "ada@example.com", "first": first}


def customer(services: Services) -> str:
    """Ada's profile, found by email and phone."""
    return put_now(
        services, "Crm", id="crm-0", email="ada@example.com", phone="+12065550100"
    ).profile_id


def fields_of(services: Services, profile_id: str) -> dict[str, Any] | None:
    with services.read() as tx:
        found = find_profile(tx, domain_name=DOMAIN, profile_id=profile_id)
    return None if found is None else found.fields


def rows_of_type(services: Services, type_name: str) -> tuple[int, int, int]:
    """(objects, profile key rows, object_type rows) of the type."""
    with services.read() as tx:
        count = select(func.count())
        return (
            tx.conn.execute(
                count.select_from(profile_object).where(
                    profile_object.c.object_type_name == type_name
                )
            ).scalar_one(),
            tx.conn.execute(
                count.select_from(profile_key).where(profile_key.c.origin == type_name)
            ).scalar_one(),
            tx.conn.execute(
                count.select_from(object_type).where(object_type.c.name == type_name)
            ).scalar_one(),
        )


def update_last_name(services: Services, profile_id: str) -> None:
    with services.write() as tx:
        update_profile(
            tx, domain_name=DOMAIN, profile_id=profile_id, changes={"LastName": "Lovelace"}
        )


# ---------------------------------------------------------------------------- lost updates


@pytest.mark.parametrize("first_type", TYPES)
def test_puts_finding_one_profile_by_different_keys_both_count(
    pg: Services, first_type: str
) -> None:
    """Different keys take different key locks, so only the profile's row lock orders them."""
    ada = customer(pg)
    outcome = second_writer_meets_first(
        pg,
        lambda tx: put(tx, first_type, **by_email(first_type, "Ada")),
        lambda: put_now(pg, "Crm", id="crm-phone", phone="+12065550100", last="Lovelace"),
    )
    assert isinstance(outcome, IngestResult) and outcome.profile_id == ada
    fields = fields_of(pg, ada)
    assert fields is not None
    assert (fields.get("FirstName"), fields.get("LastName")) == ("Ada", "Lovelace")


@pytest.mark.parametrize("put_type_name", TYPES)
@pytest.mark.parametrize("put_first", [True, False], ids=["put_first", "update_first"])
def test_a_put_and_an_update_of_one_profile_both_count(
    pg: Services, put_type_name: str, put_first: bool
) -> None:
    ada = customer(pg)

    def put_ada() -> None:
        put_now(pg, put_type_name, **by_email(put_type_name, "Ada"))

    def update_ada(tx: Tx) -> None:
        update_profile(tx, domain_name=DOMAIN, profile_id=ada, changes={"LastName": "Lovelace"})

    if put_first:
        outcome = second_writer_meets_first(
            pg,
            lambda tx: put(tx, put_type_name, **by_email(put_type_name, "Ada")),
            lambda: update_last_name(pg, ada),
        )
    else:
        outcome = second_writer_meets_first(pg, update_ada, put_ada)
    assert outcome is None
    fields = fields_of(pg, ada)
    assert fields is not None
    assert (fields.get("FirstName"), fields.get("LastName")) == ("Ada", "Lovelace")


# ---------------------------------------------------------------------------- DeleteProfile


@pytest.mark.parametrize("type_name", TYPES)
def test_a_put_that_waited_for_the_deletion_of_its_profile_creates_a_new_one(
    pg: Services, type_name: str
) -> None:
    """It found the profile by its email before the deletion committed: once the profile is
    gone, the email finds nothing, and the object gets a profile of its own (no foreign-key
    error, no KeyError, no write to the deleted profile)."""
    ada = customer(pg)
    outcome = second_writer_meets_first(
        pg,
        lambda tx: delete_profile(tx, domain_name=DOMAIN, profile_id=ada),
        lambda: put_now(pg, type_name, **by_email(type_name, "Ada")),
    )
    assert isinstance(outcome, IngestResult), outcome
    assert outcome.created_profile and outcome.profile_id != ada
    assert fields_of(pg, ada) is None
    assert fields_of(pg, outcome.profile_id) == {
        "EmailAddress": "ada@example.com",
        "FirstName": "Ada",
    }
    with pg.read() as tx:
        stored, _ = list_profile_objects(
            tx,
            domain_name=DOMAIN,
            object_type_name=type_name,
            profile_id=outcome.profile_id,
            limit=10,
        )
    assert len(stored) == 1


# ------------------------------------------------------------------ DeleteProfileObjectType


def test_a_put_that_waited_for_the_deletion_of_its_type_finds_it_gone(pg: Services) -> None:
    customer(pg)
    outcome = second_writer_meets_first(
        pg,
        lambda tx: delete_object_type(tx, domain_name=DOMAIN, name="Crm"),
        lambda: put_now(pg, "Crm", id="crm-late", email="ada@example.com", first="Ada"),
    )
    assert isinstance(outcome, NotFound), outcome
    assert rows_of_type(pg, "Crm") == (0, 0, 0)


@pytest.mark.parametrize(
    ("type_name", "obj"),
    [
        ("Crm", {"id": "crm-new", "email": "grace@example.com", "first": "Grace"}),
        (IMPLICIT, {"Id": "003-1", "Email": "grace@example.com", "FirstName": "Grace"}),
    ],
    ids=["explicit", "implicit"],
)
def test_a_deletion_of_a_type_waits_for_its_puts_in_flight_and_removes_their_objects(
    pg: Services, type_name: str, obj: dict[str, Any]
) -> None:
    """An implicit type has no row to lock until its first use (which this put is)."""
    customer(pg)
    outcome = second_writer_meets_first(
        pg,
        lambda tx: put(tx, type_name, **obj),
        lambda: _delete_type(pg, type_name),
    )
    assert outcome is None
    assert rows_of_type(pg, type_name) == (0, 0, 0)


def _delete_type(services: Services, name: str) -> None:
    with services.write() as tx:
        delete_object_type(tx, domain_name=DOMAIN, name=name)


def test_a_deletion_of_a_type_keeps_a_concurrent_change_to_a_profile_it_scrubs(
    pg: Services,
) -> None:
    """Deleting a type removes the profile fields it set, writing the profile back."""
    ada = put_now(pg, "Crm", id="crm-0", email="ada@example.com", first="Ada").profile_id
    outcome = second_writer_meets_first(
        pg,
        lambda tx: update_profile(
            tx, domain_name=DOMAIN, profile_id=ada, changes={"LastName": "Lovelace"}
        ),
        lambda: _delete_type(pg, "Crm"),
    )
    assert outcome is None
    assert fields_of(pg, ada) == {"LastName": "Lovelace"}


def test_an_object_deleted_while_a_merge_moves_it_is_refused_and_kept(pg: Services) -> None:
    """DeleteProfileObject by the merged-away profile's id, waiting behind the merge that moves
    the object: the id is merged away once the merge commits, so NotFound naming the survivor
    (profiles.service docstring), and the object stays on the survivor. It used to match nothing,
    answer success, and leave the object on the survivor; then to delete it from the survivor,
    acting on another profile than the one named."""
    from openprofiles.identity.service import merge_profiles
    from openprofiles.objects.service import delete_profile_object

    main = put_now(pg, "Crm", id="crm-main", email="main@example.com").profile_id
    moved = put_now(pg, "Crm", id="crm-moved", email="moved@example.com")

    def merge(tx: Tx) -> None:
        merge_profiles(tx, domain_name=DOMAIN, main_profile_id=main, profile_ids=[moved.profile_id])

    def delete() -> None:
        with pg.write() as tx:
            delete_profile_object(
                tx,
                domain_name=DOMAIN,
                object_type_name="Crm",
                profile_id=moved.profile_id,
                unique_key=moved.profile_object_unique_key,
            )

    outcome = second_writer_meets_first(pg, merge, delete)
    assert isinstance(outcome, NotFound) and f"merged into {main}" in outcome.message
    with pg.read() as tx:
        left = tx.conn.execute(
            select(profile_object.c.profile_id).where(
                profile_object.c.domain_name == DOMAIN,
                profile_object.c.unique_digest == bytes.fromhex(moved.profile_object_unique_key),
            )
        ).all()
    assert [row.profile_id for row in left] == [main]
