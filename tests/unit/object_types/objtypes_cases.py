"""One invalid definition per validation rule of spec §1.5 (and the field/key/target rules of
§1.1-1.3), with a fragment the BadRequest message must contain. Shared by the unit tests and the
boto3 wire tests."""

from __future__ import annotations

import copy
from typing import Any

from tests.unit.object_types.conftest import profile_mapping


def _with(change: Any) -> dict[str, Any]:
    definition = copy.deepcopy(profile_mapping())
    change(definition)
    return definition


def _field(name: str, spec: dict[str, Any]) -> Any:
    return lambda d: d["Fields"].__setitem__(name, spec)


def _key(name: str, entries: list[dict[str, Any]]) -> Any:
    return lambda d: d["Keys"].__setitem__(name, entries)


def _both(*changes: Any) -> Any:
    def apply(d: dict[str, Any]) -> None:
        for change in changes:
            change(d)

    return apply


ASSET_FIELD = _field("serial", {"Source": "_source.serial", "Target": "_asset.SerialNumber"})

# (id, definition, expected message fragment)
RULE_CASES: list[tuple[str, dict[str, Any], str]] = [
    (
        "rule1-no-unique",
        _with(_key("customerId", [{"StandardIdentifiers": ["PROFILE"], "FieldNames": ["id"]}])),
        "Exactly one key must carry the UNIQUE",
    ),
    (
        "rule1-two-unique",
        _with(_key("other", [{"StandardIdentifiers": ["UNIQUE"], "FieldNames": ["first"]}])),
        "keys customerId and other carry it",
    ),
    (
        # One key, two definitions carrying UNIQUE: named once, with the rule it breaks.
        "rule1-one-key-two-unique-definitions",
        _with(
            _key(
                "customerId",
                [
                    {"StandardIdentifiers": ["PROFILE", "UNIQUE"], "FieldNames": ["id"]},
                    {"StandardIdentifiers": ["UNIQUE"], "FieldNames": ["first"]},
                ],
            )
        ),
        "in one definition (it identifies the profile object; a composite unique key lists all "
        "its fields in that definition's FieldNames); key customerId has 2 definitions that "
        "carry it.",
    ),
    (
        "rule2-no-profile",
        _with(
            _both(
                _key("customerId", [{"StandardIdentifiers": ["UNIQUE"], "FieldNames": ["id"]}]),
                _key("_email", [{"FieldNames": ["email"]}]),
            )
        ),
        "At least one key must carry the PROFILE",
    ),
    (
        "rule3-all-profile-keys-lookup-only",
        _with(
            _both(
                _key("customerId", [{"StandardIdentifiers": ["UNIQUE"], "FieldNames": ["id"]}]),
                _key(
                    "_email",
                    [{"StandardIdentifiers": ["PROFILE", "LOOKUP_ONLY"], "FieldNames": ["email"]}],
                ),
            )
        ),
        "at least one PROFILE key must be neither LOOKUP_ONLY nor NEW_ONLY",
    ),
    (
        "rule4-unique-lookup-only",
        _with(
            _key(
                "customerId",
                [
                    {
                        "StandardIdentifiers": ["PROFILE", "UNIQUE", "LOOKUP_ONLY"],
                        "FieldNames": ["id"],
                    }
                ],
            )
        ),
        "UNIQUE cannot be combined with LOOKUP_ONLY or NEW_ONLY",
    ),
    (
        "rule5-asset-target-without-asset-key",
        _with(ASSET_FIELD),
        "a key must carry the ASSET standard identifier",
    ),
    (
        "rule6-unknown-profile-field",
        _with(_field("x", {"Source": "_source.x", "Target": "_profile.BusinessEmail"})),
        "'BusinessEmail' is not a field of _profile",
    ),
    (
        "rule6-unknown-address-part",
        _with(_field("x", {"Source": "_source.x", "Target": "_profile.Address.Street"})),
        "_profile.Address has no part 'Street'",
    ),
    (
        "rule6-system-id-target",
        _with(_field("x", {"Source": "_source.x", "Target": "_profile.ProfileId"})),
        "a system identifier that cannot be mapped",
    ),
    (
        "rule6-asset-id-target",
        _with(_field("x", {"Source": "_source.x", "Target": "_asset.AssetId"})),
        "_asset.AssetId, a system identifier",
    ),
    (
        "rule6-unknown-root",
        _with(_field("x", {"Source": "_source.x", "Target": "profile.FirstName"})),
        "a Target must start with a standard object",
    ),
    (
        "rule6-gender-and-genderstring",
        _with(
            _both(
                _field("g1", {"Source": "_source.g", "Target": "_profile.Gender"}),
                _field("g2", {"Source": "_source.g", "Target": "_profile.GenderString"}),
            )
        ),
        "target both _profile.Gender and _profile.GenderString",
    ),
    (
        "rule6-partytype-and-partytypestring",
        _with(
            _both(
                _field("p1", {"Source": "_source.p", "Target": "_profile.PartyType"}),
                _field("p2", {"Source": "_source.p", "Target": "_profile.PartyTypeString"}),
            )
        ),
        "target both _profile.PartyType and _profile.PartyTypeString",
    ),
    (
        "rule6-timestamp-without-format",
        _with(
            _field("ts", {"Source": "_source.ts", "Target": "_profile.SourceLastUpdatedTimestamp"})
        ),
        "requires SourceLastUpdatedTimestampFormat",
    ),
    (
        "rule7-unknown-field-name",
        _with(_key("extra", [{"FieldNames": ["missing"]}])),
        "Key extra references field missing, which is not defined",
    ),
    (
        "rule7-key-without-fields",
        _with(_key("extra", [{"StandardIdentifiers": ["PROFILE"], "FieldNames": []}])),
        "Key extra must reference at least one field",
    ),
    (
        "rule9-too-many-fields",
        _with(
            lambda d: d["Fields"].update({f"f{i}": {"Source": f"_source.f{i}"} for i in range(250)})
        ),
        "at most 250 fields",
    ),
    (
        "rule10-unknown-underscore-key",
        _with(_key("_loyalty", [{"FieldNames": ["first"]}])),
        "_loyalty is not one of them",
    ),
    (
        "rule10-tags-key",
        _with(_key("Tags", [{"FieldNames": ["first"]}])),
        "Key name 'Tags' is invalid",
    ),
    (
        "rule10-profile-id-not-lookup-only",
        _with(_key("_profileId", [{"StandardIdentifiers": ["PROFILE"], "FieldNames": ["id"]}])),
        "Key _profileId is a system identifier and must be LOOKUP_ONLY",
    ),
    (
        "field-name-tags",
        _with(_field("tags", {"Source": "_source.tags"})),
        "Field name 'tags' is invalid",
    ),
    (
        "field-name-starts-with-digit",
        _with(_field("1st", {"Source": "_source.x"})),
        "Field name '1st' is invalid",
    ),
    (
        "source-not-rooted",
        _with(_field("x", {"Source": "source.x"})),
        "a Source must be a path starting with _source",
    ),
    (
        # The mapping looks `a[0]` up as a member named "a[0]": the field would stay empty.
        "source-bracket-index",
        _with(_field("x", {"Source": "_source.items[0].id"})),
        "not brackets (as in _source.items.0.id); write _source.items.0.id.",
    ),
    (
        "source-bracket-wildcard",
        _with(_field("x", {"Source": "_source.items[*].id"})),
        "a Source path has no wildcard",
    ),
    (
        "handlebars-bracket-index",
        _with(_field("x", {"Source": "{{_source.items[0].id}}"})),
        "index arrays with a dot, as in _source.items.0.id",
    ),
    (
        "handlebars-unclosed-block",
        _with(_field("x", {"Source": "{{#if _source.a}}{{_source.a}}"})),
        "invalid Handlebars Source: the block {{#if}} is never closed",
    ),
    (
        "handlebars-unknown-helper",
        _with(_field("x", {"Source": "{{#lookup _source.a}}x{{/lookup}}"})),
        "the block helper lookup is not supported",
    ),
    (
        "handlebars-path-not-rooted",
        _with(_field("x", {"Source": "{{firstName}} {{_source.b}}"})),
        "the path firstName must start with _source",
    ),
    (
        "bad-timestamp-format",
        {**_with(lambda d: None), "SourceLastUpdatedTimestampFormat": "yyyy-MM-dd Q"},
        "the pattern letter 'Q' is not supported",
    ),
    ("no-keys", _with(lambda d: d.__setitem__("Keys", {})), "both Fields and Keys"),
]
