"""The mapping engine: sources, Handlebars, targets, keys, timestamps (spec §1.2-1.5, §1.7)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from openprofiles.ingest.mapping import (
    MappingError,
    java_format_to_strptime,
    map_object,
    parse_source_timestamp,
)
from openprofiles.normalize import ContentType
from openprofiles.object_types.models import ObjectType

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def make_type(fields: dict[str, Any], keys: dict[str, Any], **more: Any) -> ObjectType:
    return ObjectType.from_definition(
        {"Fields": fields, "Keys": keys, **more},
        domain_name="d",
        name="T",
        created_at=NOW,
        updated_at=NOW,
    )


CUSTOMER = make_type(
    {
        "id": {"Source": "_source.id"},
        "email": {
            "Source": "_source.email",
            "Target": "_profile.PersonalEmailAddress",
            "ContentType": "EMAIL_ADDRESS",
        },
        "phone": {"Source": "_source.phone", "ContentType": "PHONE_NUMBER"},
        "first": {"Source": "_source.first", "Target": "_profile.FirstName"},
        "city": {"Source": "_source.address.city", "Target": "_profile.ShippingAddress.City"},
        "tier": {"Source": "_source.tier", "Target": "_profile.Attributes.Tier"},
        "gender": {"Source": "_source.gender", "Target": "_profile.Gender"},
        "full": {"Source": "{{_source.first}} {{_source.last}}", "ContentType": "NAME"},
        "item": {"Source": "_source.items.1.sku", "Target": "_profile.Attributes.SecondSku"},
    },
    {
        "customerId": [{"StandardIdentifiers": ["PROFILE", "UNIQUE"], "FieldNames": ["id"]}],
        "_email": [{"StandardIdentifiers": ["PROFILE"], "FieldNames": ["email"]}],
        "fullName": [{"FieldNames": ["full"]}],
        "custPhone": [{"FieldNames": ["phone"]}],
    },
)


def test_paths_targets_and_keys():
    mapped = map_object(
        CUSTOMER,
        {
            "id": 1234,
            "email": " Ada@Example.COM",
            "phone": "(206) 345-7890",
            "first": "Ada",
            "last": "Lovelace",
            "address": {"city": "London"},
            "tier": "Gold",
            "gender": "Female",
            "items": [{"sku": "a"}, {"sku": "b"}],
        },
        phone_region="US",
    )
    assert mapped.field_values["id"] == "1234"
    assert mapped.targets == {
        "_profile": {
            "PersonalEmailAddress": " Ada@Example.COM",
            "FirstName": "Ada",
            "ShippingAddress": {"City": "London"},
            "Attributes": {"Tier": "Gold", "SecondSku": "b"},
            # Not one of MALE/FEMALE/UNSPECIFIED: kept as free text (spec §7.10).
            "GenderString": "Female",
        }
    }
    keys = {k.name: k for k in mapped.keys}
    assert mapped.unique_key == keys["customerId"]
    assert keys["customerId"].value == "1234"
    assert keys["customerId"].identifiers == frozenset({"PROFILE", "UNIQUE"})
    assert keys["_email"].normalised == "ada@example.com"
    assert keys["_email"].content_type is ContentType.EMAIL_ADDRESS
    assert keys["fullName"].normalised == "ada lovelace"
    assert keys["custPhone"].normalised == "+12063457890"
    assert mapped.inferred_email == " Ada@Example.COM"
    assert mapped.inferred_phone == "(206) 345-7890"


def test_missing_values_are_empty_and_write_nothing():
    mapped = map_object(CUSTOMER, {"id": "x", "gender": "MALE", "tier": ""}, phone_region="US")
    assert mapped.field_values["email"] == ""
    assert mapped.field_values["full"] == ""
    assert mapped.targets == {"_profile": {"Gender": "MALE"}}
    assert [k.name for k in mapped.keys] == ["customerId"]
    assert mapped.inferred_email is None


def test_unique_key_missing_gives_none():
    assert map_object(CUSTOMER, {"email": "a@b.c"}, phone_region="US").unique_key is None


def test_values_become_strings():
    object_type = make_type(
        {n: {"Source": f"_source.{n}", "Target": f"_profile.Attributes.{n}"} for n in "abcd"},
        {"k": [{"StandardIdentifiers": ["PROFILE", "UNIQUE"], "FieldNames": ["a"]}]},
    )
    mapped = map_object(
        object_type, {"a": 1.5, "b": True, "c": False, "d": None}, phone_region="US"
    )
    assert mapped.field_values == {"a": "1.5", "b": "true", "c": "false", "d": ""}


def test_composite_key_joins_fields_with_underscore():
    object_type = make_type(
        {
            "email": {"Source": "_source.email", "ContentType": "EMAIL_ADDRESS"},
            "ts": {"Source": "_source.timestamp"},
        },
        {
            "_email": [{"StandardIdentifiers": ["PROFILE"], "FieldNames": ["email"]}],
            "uniqueTicket": [{"StandardIdentifiers": ["UNIQUE"], "FieldNames": ["email", "ts"]}],
        },
    )
    mapped = map_object(
        object_type, {"email": "J@x.com", "timestamp": "2010-01-01T12:34:56Z"}, phone_region="US"
    )
    assert mapped.unique_key is not None
    assert mapped.unique_key.value == "J@x.com_2010-01-01T12:34:56Z"
    # Composite keys are compared as written (STRING).
    assert mapped.unique_key.normalised == "J@x.com_2010-01-01T12:34:56Z"
    assert mapped.unique_key.content_type is ContentType.STRING
    partial = map_object(object_type, {"email": "J@x.com"}, phone_region="US")
    assert partial.unique_key is None


def test_handlebars_helpers():
    object_type = make_type(
        {
            "id": {"Source": "_source.id"},
            "name": {
                "Source": "{{#removeExtraSpace}} {{_source.first}}   {{_source.middle}} "
                "{{_source.last}} {{/removeExtraSpace}}"
            },
            "vip": {"Source": "{{#if _source.vip}}yes{{else}}no{{/if}}"},
            "notvip": {"Source": "{{#unless _source.vip}}regular{{/unless}}"},
            "skus": {"Source": "{{#each _source.items}}{{sku}};{{/each}}"},
            "city": {"Source": "{{#with _source.address}}{{city}}/{{zip}}{{/with}}"},
            "raw": {"Source": "{{_source.html}}"},
        },
        {"k": [{"StandardIdentifiers": ["PROFILE", "UNIQUE"], "FieldNames": ["id"]}]},
    )
    mapped = map_object(
        object_type,
        {
            "id": "1",
            "first": "Ada",
            "last": "Lovelace",
            "vip": True,
            "items": [{"sku": "a"}, {"sku": "b"}],
            "address": {"city": "London", "zip": "N1"},
            "html": "<b>&'",
        },
        phone_region="US",
    )
    assert mapped.field_values["name"] == "Ada Lovelace"
    assert mapped.field_values["vip"] == "yes"
    assert mapped.field_values["notvip"] == ""
    assert mapped.field_values["skus"] == "a;b;"
    assert mapped.field_values["city"] == "London/N1"
    # Values are data, not HTML: nothing is escaped.
    assert mapped.field_values["raw"] == "<b>&'"


def test_whole_object_source_into_address_and_errors_for_structures():
    object_type = make_type(
        {
            "id": {"Source": "_source.id"},
            "address": {"Source": "_source.address", "Target": "_profile.Address"},
        },
        {"k": [{"StandardIdentifiers": ["PROFILE", "UNIQUE"], "FieldNames": ["id"]}]},
    )
    mapped = map_object(
        object_type,
        {"id": "1", "address": {"Address1": "1 Main St", "City": "X", "Unknown": "y", "Zip": ""}},
        phone_region="US",
    )
    assert mapped.targets == {"_profile": {"Address": {"Address1": "1 Main St", "City": "X"}}}
    with pytest.raises(MappingError, match="takes a JSON object"):
        map_object(object_type, {"id": "1", "address": "1 Main St"}, phone_region="US")
    with pytest.raises(MappingError, match="gives a JSON object, but Target _profile.FirstName"):
        map_object(
            make_type(
                {
                    "id": {"Source": "_source.id"},
                    "n": {"Source": "_source.n", "Target": "_profile.FirstName"},
                },
                {"k": [{"StandardIdentifiers": ["PROFILE", "UNIQUE"], "FieldNames": ["id"]}]},
            ),
            {"id": "1", "n": {"a": 1}},
            phone_region="US",
        )


def test_number_fields_must_hold_numbers():
    object_type = make_type(
        {"id": {"Source": "_source.id", "ContentType": "NUMBER"}},
        {"k": [{"StandardIdentifiers": ["PROFILE", "UNIQUE"], "FieldNames": ["id"]}]},
    )
    assert map_object(object_type, {"id": "1234.0"}, phone_region="US").keys[0].normalised == "1234"
    with pytest.raises(MappingError, match="is not a number"):
        map_object(object_type, {"id": "abc"}, phone_region="US")
    # A reason is listed (dlq list) and sent on (SQS): it quotes the value's beginning only.
    with pytest.raises(MappingError) as exc:
        map_object(object_type, {"id": "x" * 250_000}, phone_region="US")
    assert exc.value.message == f'Field id: "{"x" * 76}... is not a number (ContentType NUMBER).'


def test_standard_objects_and_predefined_key_types():
    object_type = make_type(
        {
            "serial": {"Source": "_source.serial", "Target": "_asset.SerialNumber"},
            "email": {"Source": "_source.email"},  # untyped, but _email is always an email
            "items": {"Source": "_source.items", "Target": "_order.OrderItems"},
        },
        {
            "serialKey": [{"StandardIdentifiers": ["ASSET", "UNIQUE"], "FieldNames": ["serial"]}],
            "_email": [{"StandardIdentifiers": ["PROFILE"], "FieldNames": ["email"]}],
        },
    )
    mapped = map_object(
        object_type,
        {"serial": "SN1", "email": "A@B.C", "items": [{"Title": "x", "Quantity": 2, "x": {}}]},
        phone_region="US",
    )
    assert mapped.targets == {
        "_asset": {"SerialNumber": "SN1"},
        "_order": {"OrderItems": [{"Title": "x", "Quantity": "2"}]},
    }
    assert {k.name: k.normalised for k in mapped.keys}["_email"] == "a@b.c"


def test_source_last_updated_timestamp():
    fields = {
        "id": {"Source": "_source.id"},
        "ts": {"Source": "_source.ts", "Target": "_profile.SourceLastUpdatedTimestamp"},
    }
    keys = {"k": [{"StandardIdentifiers": ["PROFILE", "UNIQUE"], "FieldNames": ["id"]}]}
    epoch = make_type(fields, keys, SourceLastUpdatedTimestampFormat="EPOCHMILLI")
    mapped = map_object(epoch, {"id": "1", "ts": 1767225600123}, phone_region="US")
    assert mapped.source_last_updated == datetime(2026, 1, 1, 0, 0, 0, 123000, tzinfo=UTC)
    assert "_profile" not in mapped.targets
    java = make_type(fields, keys, SourceLastUpdatedTimestampFormat="yyyy-MM-dd'T'HH:mm:ss'Z'")
    mapped = map_object(java, {"id": "1", "ts": "2024-05-06T07:08:09Z"}, phone_region="US")
    assert mapped.source_last_updated == datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    with pytest.raises(MappingError, match="does not match SourceLastUpdatedTimestampFormat"):
        map_object(java, {"id": "1", "ts": "06/05/2024"}, phone_region="US")
    with pytest.raises(MappingError, match="EpochMilli"):
        map_object(epoch, {"id": "1", "ts": "yesterday"}, phone_region="US")


@pytest.mark.parametrize(
    ("java", "value", "expected"),
    [
        (
            "yyyy-MM-dd HH:mm:ss.SSS",
            "2024-05-06 07:08:09.250",
            datetime(2024, 5, 6, 7, 8, 9, 250000, tzinfo=UTC),
        ),
        (
            "yyyy-MM-dd'T'HH:mm:ssXXX",
            "2024-05-06T07:08:09+02:00",
            datetime(2024, 5, 6, 5, 8, 9, tzinfo=UTC),
        ),
        ("dd/MM/yy HH:mm Z", "06/05/24 07:08 -0100", datetime(2024, 5, 6, 8, 8, tzinfo=UTC)),
        ("yyyyMMdd", "20240506", datetime(2024, 5, 6, tzinfo=UTC)),
    ],
)
def test_java_patterns(java, value, expected):
    assert parse_source_timestamp(value, java) == expected


def test_java_pattern_translation_rejects_unknown_letters():
    assert java_format_to_strptime("yyyy-MM-dd'T'HH:mm:ss'Z'") == "%Y-%m-%dT%H:%M:%SZ"
    with pytest.raises(ValueError, match="'G'"):
        java_format_to_strptime("G yyyy")
