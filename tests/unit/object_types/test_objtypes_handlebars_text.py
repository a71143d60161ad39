"""How a Handlebars Source renders each kind of JSON value: objects and arrays as compact JSON,
never Python's repr (spec §1.2)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tests.unit.object_types.test_objtypes_mapping import make_type

from openprofiles.ingest.handlebars import render
from openprofiles.ingest.mapping import map_object

DOCUMENT: dict[str, Any] = {
    "id": "1",
    "a": ["p", {"q": 1}],
    "o": {"city": "Zürich", "zip": None},
    "yes": True,
    "no": False,
    "nothing": None,
    "n": 1.5,
    "i": 0,
    "s": "x<y",
}
ROOT = json.dumps({"_source": DOCUMENT}, ensure_ascii=False, separators=(",", ":"))


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{_source.a}}", '["p",{"q":1}]'),
        ("{{{_source.a}}}", '["p",{"q":1}]'),
        ("{{_source.o}}", '{"city":"Zürich","zip":null}'),
        ("{{_source.a.1}}", '{"q":1}'),
        ("{{#each _source.a}}[{{this}}]{{/each}}", '[p][{"q":1}]'),
        ("{{#with _source.o}}{{this}}{{/with}}", '{"city":"Zürich","zip":null}'),
        # The parent of #each's scope is the root, {"_source": ...}: still JSON, not a Scope.
        ("{{#each _source.a}}{{#if @first}}{{../this}}{{/if}}{{/each}}", ROOT),
        (
            "{{#removeExtraSpace}} {{_source.a}}   {{_source.s}} {{/removeExtraSpace}}",
            '["p",{"q":1}] x<y',
        ),
        # Scalars render as before.
        ("{{_source.s}}", "x<y"),
        ("{{_source.yes}}/{{_source.no}}", "true/false"),
        ("[{{_source.nothing}}][{{_source.missing}}]", "[][]"),
        ("{{_source.n}} {{_source.i}}", "1.5 0"),
    ],
)
def test_values_render_as_json_text(source: str, expected: str) -> None:
    assert render(source, DOCUMENT) == expected


def test_whole_source_renders_as_compact_json() -> None:
    assert render("{{_source}}", {"id": "1", "ok": True, "n": None}) == (
        '{"id":"1","ok":true,"n":null}'
    )


def test_an_attribute_from_a_template_over_an_array_holds_json() -> None:
    object_type = make_type(
        {
            "id": {"Source": "_source.id"},
            "e": {"Source": "{{_source.a}}", "Target": "_profile.Attributes.e"},
        },
        {"k": [{"StandardIdentifiers": ["PROFILE", "UNIQUE"], "FieldNames": ["id"]}]},
    )
    mapped = map_object(object_type, DOCUMENT, phone_region="US")
    assert mapped.targets["_profile"]["Attributes"]["e"] == '["p",{"q":1}]'
