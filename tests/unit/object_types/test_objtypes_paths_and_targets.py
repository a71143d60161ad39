"""PutProfileObjectType refuses a Target with an empty member and a non-ASCII Source path
(object_types.validation).

* `_profile.FirstName.` was taken as FirstName, `_profile.Attributes.Tier.` as an attribute
  named "Tier.", `_profile.Attributes..Tier` as one named ".Tier": an empty member is a typo.
* `{{_source.ñ}}` was refused (a template's paths are ASCII) while `_source.ñ` was accepted as a
  plain path: the two ways to name one member now agree, and refuse it. Every plain path of the
  built-in templates stays valid (test_objtypes_templates puts each).
"""

from __future__ import annotations

from typing import Any

import pytest
from tests.unit.object_types.conftest import profile_mapping

from openprofiles.errors import BadRequest
from openprofiles.object_types.validation import validate_definition


def with_field(**field: Any) -> dict[str, Any]:
    definition = profile_mapping()
    definition["Fields"]["extra"] = field
    return definition


@pytest.mark.parametrize(
    "target",
    [
        "_profile.FirstName.",
        "_profile.Attributes.Tier.",
        "_profile.Attributes..Tier",
        "_profile.Address.City.",
        "_profile..FirstName",
        "_profile.",
    ],
)
def test_a_target_with_an_empty_member_is_refused_naming_it(target: str) -> None:
    with pytest.raises(BadRequest) as refused:
        validate_definition(with_field(Source="_source.x", Target=target), existing_keys={})
    assert target in str(refused.value)
    assert "Field extra" in str(refused.value)


@pytest.mark.parametrize(
    "source", ["_source.ñ", "_source.a.ñame", "_source.３", "_source.a\u00a0b"]
)
def test_a_non_ascii_source_path_is_refused_as_its_template_is(source: str) -> None:
    for written in (source, "{{" + source + "}}"):
        with pytest.raises(BadRequest) as refused:
            validate_definition(with_field(Source=written), existing_keys={})
        assert "Field extra" in str(refused.value)


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ("_source.a-b.c_d.$e.0", "_profile.Attributes.Tier"),
        ("_source.@timestamp", "_profile.Attributes.a.b"),
        ("_source.x", "_profile.Address.City"),
    ],
)
def test_ascii_paths_and_dotted_attribute_names_stay_valid(source: str, target: str) -> None:
    validate_definition(with_field(Source=source, Target=target), existing_keys={})
