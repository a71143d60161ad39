"""Fixtures of the object-type unit tests: a domain on a real database (both backends)."""

from __future__ import annotations

from typing import Any

import pytest

from openprofiles.context import Services
from openprofiles.domains.service import create_domain


@pytest.fixture
def domain(services: Services) -> str:
    return make_domain(services)


def make_domain(services: Services) -> str:
    name = "objtypes"
    wrapped = services.keys.new_domain_key(name, None)
    with services.write() as tx:
        create_domain(
            tx,
            domain_name=name,
            config={"DefaultExpirationDays": 30},
            key_id=wrapped.key_id,
            wrapped_key=wrapped.wrapped,
        )
    return name


def profile_mapping(**overrides: Any) -> dict[str, Any]:
    """A valid definition to break one rule at a time."""
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
        },
        "Keys": {
            "customerId": [{"StandardIdentifiers": ["PROFILE", "UNIQUE"], "FieldNames": ["id"]}],
            "_email": [{"StandardIdentifiers": ["PROFILE"], "FieldNames": ["email"]}],
        },
    }
    definition.update(overrides)
    return definition
