"""Fixtures of the ingestion tests: a domain on a real database (both backends) and helpers to
define object types and ingest objects through the pipeline."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from openprofiles.context import Services
from openprofiles.domains.service import create_domain
from openprofiles.ingest.pipeline import IngestResult, ingest_object
from openprofiles.object_types.service import put_object_type

DOMAIN = "ingest"


def make_domain(services: Services, name: str = DOMAIN, **config: Any) -> str:
    wrapped = services.keys.new_domain_key(name, None)
    with services.write() as tx:
        create_domain(
            tx,
            domain_name=name,
            config={"DefaultExpirationDays": 30, **config},
            key_id=wrapped.key_id,
            wrapped_key=wrapped.wrapped,
        )
    return name


@pytest.fixture
def domain(services: Services) -> str:
    return make_domain(services)


def put_type(
    services: Services, name: str, definition: dict[str, Any], domain: str = DOMAIN
) -> None:
    with services.write() as tx:
        put_object_type(tx, domain_name=domain, name=name, params=definition)


def ingest(
    services: Services, type_name: str, obj: dict[str, Any], domain: str = DOMAIN
) -> IngestResult:
    raw = json.dumps(obj)
    with services.write() as tx:
        return ingest_object(
            tx, domain_name=domain, object_type_name=type_name, source=obj, raw=raw
        )


Ingest = Callable[[str, dict[str, Any]], IngestResult]


def crm_type(**overrides: Any) -> dict[str, Any]:
    """Customers keyed by a CRM id (PROFILE+UNIQUE) and email (PROFILE)."""
    definition: dict[str, Any] = {
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
            "last": {"Source": "_source.last", "Target": "_profile.LastName"},
            "tier": {"Source": "_source.tier", "Target": "_profile.Attributes.Tier"},
            "city": {"Source": "_source.city", "Target": "_profile.Address.City"},
        },
        "Keys": {
            "crmId": [{"StandardIdentifiers": ["PROFILE", "UNIQUE"], "FieldNames": ["id"]}],
            "_email": [{"StandardIdentifiers": ["PROFILE"], "FieldNames": ["email"]}],
        },
    }
    definition.update(overrides)
    return definition


def ticket_type(**overrides: Any) -> dict[str, Any]:
    """The spec's ticket example (§1.6): _email PROFILE+LOOKUP_ONLY, ticketEmail
    PROFILE+SECONDARY+NEW_ONLY, uniqueTicket UNIQUE over email+timestamp."""
    definition: dict[str, Any] = {
        "AllowProfileCreation": True,
        "Fields": {
            "email": {"Source": "_source.email", "ContentType": "EMAIL_ADDRESS"},
            "timestamp": {"Source": "_source.timestamp"},
        },
        "Keys": {
            "_email": [
                {"StandardIdentifiers": ["PROFILE", "LOOKUP_ONLY"], "FieldNames": ["email"]}
            ],
            "ticketEmail": [
                {
                    "StandardIdentifiers": ["PROFILE", "SECONDARY", "NEW_ONLY"],
                    "FieldNames": ["email"],
                }
            ],
            # PROFILE too: with AllowProfileCreation a stored PROFILE key is required
            # (validation rule 3); a ticket's own id never finds another ticket's profile.
            "uniqueTicket": [
                {"StandardIdentifiers": ["PROFILE", "UNIQUE"], "FieldNames": ["email", "timestamp"]}
            ],
        },
    }
    definition.update(overrides)
    return definition
