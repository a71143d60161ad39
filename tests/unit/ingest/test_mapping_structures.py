"""A JSON object or array from a Source never becomes a key's or an inferred profile's value
(ingest.mapping), and a Source path indexes arrays by ASCII digits only.

* A field that feeds a key, or whose ContentType (EMAIL_ADDRESS, PHONE_NUMBER) makes it an
  inferred profile's EmailAddress or PhoneNumber, took a structure's JSON text: the key
  `{"a":1}`, the address `{"work":"A@x.com"}`, which no search finds. The record is now a
  MappingError naming the field, never the value (it lands in the dead letter), as the module
  docstring always said. A field no key or inference reads still keeps a structure as JSON text.
* `_source.items.²` made `int('²')` raise ValueError (an internal error), and `_source.items.٣`
  read item 3: only ASCII digits index an array.
"""

from __future__ import annotations

from typing import Any

import pytest
from tests.unit.object_types.test_objtypes_mapping import make_type

from openprofiles.ingest.mapping import MappedObject, MappingError, map_object, resolve_path

ID_KEY = {"k": [{"StandardIdentifiers": ["PROFILE", "UNIQUE"], "FieldNames": ["id"]}]}
SECRET = "A@x.com"


def mapped(
    fields: dict[str, Any], record: dict[str, Any], keys: dict[str, Any] | None = None
) -> MappedObject:
    object_type = make_type(fields, keys or ID_KEY, AllowProfileCreation=True)
    return map_object(object_type, record, phone_region="US")


@pytest.mark.parametrize("value", [{"a": 1}, ["1", "2"]])
def test_a_structure_feeding_a_key_is_a_mapping_error_naming_the_field(value: Any) -> None:
    with pytest.raises(MappingError) as failed:
        mapped({"id": {"Source": "_source.id"}}, {"id": value})
    assert failed.value.message.startswith("Field id:")
    assert "key k" in failed.value.message
    assert '"a"' not in failed.value.message and '"1"' not in failed.value.message


def test_a_structure_in_a_composite_key_is_a_mapping_error() -> None:
    fields = {"a": {"Source": "_source.a"}, "b": {"Source": "_source.b"}}
    keys = {"ab": [{"StandardIdentifiers": ["PROFILE", "UNIQUE"], "FieldNames": ["a", "b"]}]}
    with pytest.raises(MappingError, match="^Field b: .*key ab"):
        mapped(fields, {"a": "1", "b": {"c": "2"}}, keys)


@pytest.mark.parametrize(
    ("content_type", "value", "profile_field"),
    [
        ("EMAIL_ADDRESS", {"work": SECRET}, "EmailAddress"),
        ("PHONE_NUMBER", ["+12065550100", "+12065550101"], "PhoneNumber"),
    ],
)
def test_a_structure_an_inferred_profile_would_take_is_a_mapping_error(
    content_type: str, value: Any, profile_field: str
) -> None:
    fields = {
        "id": {"Source": "_source.id"},
        "x": {"Source": "_source.x", "ContentType": content_type},
    }
    with pytest.raises(MappingError) as failed:
        mapped(fields, {"id": "1", "x": value})
    assert failed.value.message.startswith("Field x:")
    assert profile_field in failed.value.message
    assert SECRET not in failed.value.message and "+1206" not in failed.value.message


def test_a_structure_nothing_reads_as_one_value_stays_json_text() -> None:
    fields = {"id": {"Source": "_source.id"}, "raw": {"Source": "_source.raw"}}
    result = mapped(fields, {"id": "1", "raw": {"a": [1, "ü"]}})
    assert result.field_values["raw"] == '{"a":[1,"ü"]}'
    assert result.unique_key is not None and result.unique_key.value == "1"


def test_scalars_still_feed_keys_and_inference() -> None:
    fields = {
        "id": {"Source": "_source.id"},
        "em": {"Source": "_source.em", "ContentType": "EMAIL_ADDRESS"},
        "ph": {"Source": "_source.ph", "ContentType": "PHONE_NUMBER"},
    }
    result = mapped(fields, {"id": 7, "em": SECRET, "ph": "+12065550100"})
    assert result.unique_key is not None and result.unique_key.value == "7"
    assert (result.inferred_email, result.inferred_phone) == (SECRET, "+12065550100")


@pytest.mark.parametrize("segment", ["²", "٣", "３", "¹0"])
def test_only_ascii_digits_index_an_array(segment: str) -> None:
    record = {"items": ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"]}
    assert resolve_path(f"_source.items.{segment}", record) is None
    assert resolve_path("_source.items.3", record) == "d"
