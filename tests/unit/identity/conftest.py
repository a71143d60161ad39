"""Fixtures of the identity tests: a domain on a real database (both backends) with a CRM
object type, helpers to create profiles and ingest objects through the one pipeline, and (on
PostgreSQL) a lost race made by the database."""

from __future__ import annotations

import json
from typing import Any

import pytest

from openprofiles.context import Services
from openprofiles.domains.service import create_domain
from openprofiles.ingest.pipeline import IngestResult, ingest_object
from openprofiles.object_types.service import put_object_type
from openprofiles.profiles import service as profiles

DOMAIN = "ident"

CRM: dict[str, Any] = {
    "Description": "CRM customers",
    "AllowProfileCreation": True,
    "Fields": {
        "id": {"Source": "_source.id"},
        "email": {
            "Source": "_source.email",
            "Target": "_profile.EmailAddress",
            "ContentType": "EMAIL_ADDRESS",
        },
        "first": {"Source": "_source.first", "Target": "_profile.FirstName"},
    },
    "Keys": {
        "crmId": [{"StandardIdentifiers": ["PROFILE", "UNIQUE"], "FieldNames": ["id"]}],
        "_email": [{"StandardIdentifiers": ["PROFILE"], "FieldNames": ["email"]}],
    },
}


def make_domain(services: Services, name: str = DOMAIN) -> str:
    wrapped = services.keys.new_domain_key(name, None)
    with services.write() as tx:
        create_domain(
            tx,
            domain_name=name,
            config={"DefaultExpirationDays": 30},
            key_id=wrapped.key_id,
            wrapped_key=wrapped.wrapped,
        )
        put_object_type(tx, domain_name=name, name="Crm", params=CRM)
    return name


@pytest.fixture
def domain(services: Services) -> str:
    return make_domain(services)


def new_profile(services: Services, domain: str = DOMAIN, **fields: Any) -> str:
    with services.write() as tx:
        return profiles.create_profile(tx, domain_name=domain, fields=fields).profile_id


def ingest(
    services: Services, obj: dict[str, Any], domain: str = DOMAIN, *, object_type: str = "Crm"
) -> IngestResult:
    with services.write() as tx:
        return ingest_object(
            tx, domain_name=domain, object_type_name=object_type, source=obj, raw=json.dumps(obj)
        )


def put_billing_type(services: Services, domain: str = DOMAIN) -> None:
    """A second type writing the same fields as Crm, with a SourcePriority (so it may write
    over a field a person set) and a unique key of its own."""
    keys = {**CRM["Keys"], "billId": CRM["Keys"]["crmId"]}
    del keys["crmId"]
    with services.write() as tx:
        put_object_type(
            tx,
            domain_name=domain,
            name="Billing",
            params={**CRM, "Keys": keys, "SourcePriority": 1},
        )


def fields_of(services: Services, profile_id: str, domain: str = DOMAIN) -> dict[str, Any]:
    with services.read() as tx:
        return profiles.get_profile(tx, domain_name=domain, profile_id=profile_id).fields


def search(services: Services, key: str, value: str, domain: str = DOMAIN) -> list[str]:
    with services.read() as tx:
        page, _ = profiles.search_profiles(
            tx, domain_name=domain, criteria=[profiles.SearchCriterion(key, (value,))]
        )
    return [record.profile_id for record, _ in page]
