"""Every validation rule of PutProfileObjectType (spec §1.5 rules 1-10, §1.1-1.3), one by one."""

from __future__ import annotations

import copy

import pytest
from tests.unit.object_types.conftest import profile_mapping
from tests.unit.object_types.objtypes_cases import RULE_CASES

from openprofiles.errors import BadRequest
from openprofiles.normalize import ContentType
from openprofiles.object_types.validation import validate_definition, validate_object_type_name


@pytest.mark.parametrize(
    ("definition", "fragment"), [c[1:] for c in RULE_CASES], ids=[c[0] for c in RULE_CASES]
)
def test_rule_is_enforced(definition, fragment):
    with pytest.raises(BadRequest) as exc:
        validate_definition(definition, existing_keys={})
    assert exc.value.code == "BadRequestException"
    assert fragment in exc.value.message


def test_valid_mapping_passes():
    validate_definition(profile_mapping(), existing_keys={})


def test_rule3_is_waived_without_profile_creation():
    definition = profile_mapping(AllowProfileCreation=False)
    definition["Keys"]["customerId"] = [{"StandardIdentifiers": ["UNIQUE"], "FieldNames": ["id"]}]
    definition["Keys"]["_email"] = [
        {"StandardIdentifiers": ["PROFILE", "LOOKUP_ONLY"], "FieldNames": ["email"]}
    ]
    validate_definition(definition, existing_keys={})


def test_rule3_exempts_the_profile_id_key():
    definition = profile_mapping()
    definition["Keys"] = {
        "customerId": [{"StandardIdentifiers": ["UNIQUE"], "FieldNames": ["id"]}],
        "_profileId": [{"StandardIdentifiers": ["PROFILE", "LOOKUP_ONLY"], "FieldNames": ["id"]}],
    }
    validate_definition(definition, existing_keys={})


def test_rule5_is_satisfied_by_an_asset_key_and_attributes_are_allowed():
    definition = profile_mapping()
    definition["Fields"]["serial"] = {"Source": "_source.serial", "Target": "_asset.SerialNumber"}
    definition["Fields"]["installer"] = {
        "Source": "_source.installer",
        "Target": "_asset.Attributes.InstallerName",
    }
    definition["Keys"]["productSerialNumber"] = [
        {"StandardIdentifiers": ["ASSET"], "FieldNames": ["serial"]}
    ]
    validate_definition(definition, existing_keys={})


def test_composite_unique_key_and_doc_ticket_example_are_valid():
    # AG: examples-object-type-mappings (spec §1.6 worked example), as written: without
    # AllowProfileCreation (default false), so rule 3 does not apply.
    validate_definition(
        {
            "Description": "tickets",
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
                "uniqueTicket": [
                    {"StandardIdentifiers": ["UNIQUE"], "FieldNames": ["email", "timestamp"]}
                ],
            },
        },
        existing_keys={},
    )


def test_rule8_reused_key_name_needs_the_same_content_types():
    definition = profile_mapping()
    existing = {"customerId": ((ContentType.NUMBER,), "Orders")}
    with pytest.raises(BadRequest) as exc:
        validate_definition(definition, existing_keys=existing)
    assert "Key customerId is already defined by object type Orders" in exc.value.message
    assert "ContentType NUMBER" in exc.value.message
    validate_definition(definition, existing_keys={"customerId": ((ContentType.STRING,), "O")})


def test_rule8_applies_within_one_mapping():
    definition = copy.deepcopy(profile_mapping())
    definition["Keys"]["mixed"] = [{"FieldNames": ["email"]}, {"FieldNames": ["first"]}]
    with pytest.raises(BadRequest) as exc:
        validate_definition(definition, existing_keys={})
    assert "Key mixed: its definitions use fields of different ContentTypes" in exc.value.message


def test_handlebars_sources_are_accepted():
    definition = profile_mapping()
    definition["Fields"]["full"] = {
        "Source": "{{#removeExtraSpace}}{{_source.first}} {{_source.last}}{{/removeExtraSpace}}"
    }
    definition["Fields"]["kind"] = {
        "Source": "{{#if _source.vip}}VIP{{else}}{{#unless _source.x}}std{{/unless}}{{/if}}"
        "{{#each _source.tags}}{{this}}{{/each}}{{#with _source.address}}{{city}}{{/with}}"
    }
    validate_definition(definition, existing_keys={})


def test_whole_address_target_and_epoch_milli_format():
    definition = profile_mapping(SourceLastUpdatedTimestampFormat="EPOCHMILLI")
    definition["Fields"]["addr"] = {"Source": "_source.address", "Target": "_profile.Address"}
    definition["Fields"]["ts"] = {
        "Source": "_source.ts",
        "Target": "_profile.SourceLastUpdatedTimestamp",
    }
    validate_definition(definition, existing_keys={})


def test_unsupported_standard_object_root_is_named():
    definition = profile_mapping()
    definition["Fields"]["x"] = {"Source": "_source.x", "Target": "_airBooking.Price"}
    with pytest.raises(BadRequest) as exc:
        validate_definition(definition, existing_keys={})
    assert "OpenProfiles supports targets in _asset, _case, _order, _profile only" in str(
        exc.value.message
    )


@pytest.mark.parametrize("name", ["_profile", "_asset", "_mine"])
def test_underscore_object_type_names_are_reserved(name):
    with pytest.raises(BadRequest) as exc:
        validate_object_type_name(name)
    assert "reserved for standard objects" in exc.value.message
