"""The mapping engine refuses a value longer than the standard profile field it targets holds.

The bounds are the botocore model's (the `Profile` shape, which CreateProfile and UpdateProfile
are validated against): a record must not store what the API could neither return nor take back.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from openprofiles.ingest.mapping import MappingError, map_object
from openprofiles.object_types.models import ObjectType
from openprofiles.wire.model import load_service_model

NOW = datetime(2026, 1, 1, tzinfo=UTC)
PROFILE = load_service_model().shape_for("Profile")
# Read from the model rather than written out: the test follows the installed botocore.
ACCOUNT_MAX = PROFILE.members["AccountNumber"].metadata["max"]
INFO_MAX = PROFILE.members["AdditionalInformation"].metadata["max"]
CITY_MAX = PROFILE.members["Address"].members["City"].metadata["max"]
ATTRIBUTE_KEY_MAX = PROFILE.members["Attributes"].key.metadata["max"]
ATTRIBUTE_VALUE_MAX = PROFILE.members["Attributes"].value.metadata["max"]
GENDER_STRING_MAX = PROFILE.members["GenderString"].metadata["max"]
EMAIL_MAX = PROFILE.members["EmailAddress"].metadata["max"]
# A value no test should ever find in an error message.
SECRET = "Ada-Lovelace-"


def type_with(target: str, **field: Any) -> ObjectType:
    return ObjectType.from_definition(
        {
            "Fields": {
                "id": {"Source": "_source.id"},
                "value": {"Source": "_source.value", "Target": target, **field},
            },
            "Keys": {"id": [{"StandardIdentifiers": ["PROFILE", "UNIQUE"], "FieldNames": ["id"]}]},
        },
        domain_name="d",
        name="T",
        created_at=NOW,
        updated_at=NOW,
    )


def long_value(length: int) -> str:
    return (SECRET * (length // len(SECRET) + 1))[:length]


def refused(object_type: ObjectType, value: Any) -> str:
    with pytest.raises(MappingError) as exc:
        map_object(object_type, {"id": "1", "value": value}, phone_region="US")
    assert SECRET not in exc.value.message
    return exc.value.message


@pytest.mark.parametrize(
    ("target", "limit"),
    [
        ("_profile.AccountNumber", ACCOUNT_MAX),
        ("_profile.AdditionalInformation", INFO_MAX),
        ("_profile.Address.City", CITY_MAX),
        ("_profile.BillingAddress.City", CITY_MAX),
        ("_profile.Attributes.Tier", ATTRIBUTE_VALUE_MAX),
        # Not a Gender value, so it would land in GenderString.
        ("_profile.Gender", GENDER_STRING_MAX),
    ],
)
def test_a_value_longer_than_its_profile_field_is_refused(target: str, limit: int) -> None:
    object_type = type_with(target)
    at_limit = map_object(object_type, {"id": "1", "value": long_value(limit)}, phone_region="US")
    assert at_limit.targets["_profile"]
    message = refused(object_type, long_value(limit + 1))
    assert message == (
        f"Field value: its value has {limit + 1} characters, but {target} holds at most {limit}."
    )


def test_the_reported_case_a_hundred_thousand_characters_to_account_number() -> None:
    message = refused(type_with("_profile.AccountNumber"), long_value(100_000))
    assert "100000 characters" in message
    assert f"_profile.AccountNumber holds at most {ACCOUNT_MAX}" in message


def test_a_whole_address_is_checked_part_by_part() -> None:
    object_type = type_with("_profile.Address")
    fine = {"Address1": long_value(CITY_MAX), "City": "London"}
    mapped = map_object(object_type, {"id": "1", "value": fine}, phone_region="US")
    assert mapped.targets["_profile"]["Address"] == fine
    message = refused(object_type, {"Address1": "1 Main St", "City": long_value(CITY_MAX + 1)})
    assert message == (
        f"Field value: its value has {CITY_MAX + 1} characters, but _profile.Address.City "
        f"holds at most {CITY_MAX}."
    )


def test_an_attribute_name_longer_than_the_model_allows_takes_no_value() -> None:
    name = "A" * (ATTRIBUTE_KEY_MAX + 1)
    object_type = type_with(f"_profile.Attributes.{name}")
    message = refused(object_type, "Gold")
    assert message == (
        f"Field value: Target _profile.Attributes.{name} names an attribute of "
        f"{ATTRIBUTE_KEY_MAX + 1} characters; attribute names have at most {ATTRIBUTE_KEY_MAX}."
    )
    # An empty value writes nothing, so it is not refused.
    assert map_object(object_type, {"id": "1"}, phone_region="US").targets == {}
    at_limit = type_with("_profile.Attributes." + "A" * ATTRIBUTE_KEY_MAX)
    assert map_object(at_limit, {"id": "1", "value": "Gold"}, phone_region="US").targets


def test_standard_objects_without_a_model_shape_are_not_bounded() -> None:
    definition = {
        "Fields": {
            "id": {"Source": "_source.id"},
            "value": {"Source": "_source.value", "Target": "_asset.Description"},
        },
        "Keys": {"id": [{"StandardIdentifiers": ["ASSET", "UNIQUE"], "FieldNames": ["id"]}]},
    }
    object_type = ObjectType.from_definition(
        definition, domain_name="d", name="A", created_at=NOW, updated_at=NOW
    )
    mapped = map_object(object_type, {"id": "1", "value": long_value(5000)}, phone_region="US")
    assert len(mapped.targets["_asset"]["Description"]) == 5000


def test_an_inferred_email_takes_the_first_value_the_profile_field_holds() -> None:
    object_type = ObjectType.from_definition(
        {
            "Fields": {
                "id": {"Source": "_source.id"},
                "work": {"Source": "_source.work", "ContentType": "EMAIL_ADDRESS"},
                "home": {"Source": "_source.home", "ContentType": "EMAIL_ADDRESS"},
            },
            "Keys": {"id": [{"StandardIdentifiers": ["UNIQUE"], "FieldNames": ["id"]}]},
        },
        domain_name="d",
        name="T",
        created_at=NOW,
        updated_at=NOW,
    )
    too_long = long_value(EMAIL_MAX + 1) + "@example.com"
    mapped = map_object(
        object_type, {"id": "1", "work": too_long, "home": "ada@example.com"}, phone_region="US"
    )
    assert mapped.inferred_email == "ada@example.com"
    # The record itself keeps the value.
    assert mapped.field_values["work"] == too_long


def test_put_profile_object_type_refuses_a_target_naming_a_too_long_attribute() -> None:
    """No value could be written there: PutProfileObjectType says so, not each record."""
    from openprofiles.errors import BadRequest
    from openprofiles.object_types.validation import validate_definition

    def definition(name: str) -> dict[str, Any]:
        return {
            "Fields": {
                "id": {"Source": "_source.id"},
                "value": {"Source": "_source.value", "Target": f"_profile.Attributes.{name}"},
            },
            "Keys": {"id": [{"StandardIdentifiers": ["PROFILE", "UNIQUE"], "FieldNames": ["id"]}]},
        }

    with pytest.raises(BadRequest) as refused:
        validate_definition(definition("A" * (ATTRIBUTE_KEY_MAX + 1)), existing_keys={})
    assert refused.value.message.endswith(f"attribute names have at most {ATTRIBUTE_KEY_MAX}."), (
        refused.value.message
    )
    validate_definition(definition("A" * ATTRIBUTE_KEY_MAX), existing_keys={})
