"""The Handlebars shapes rendered without pybars (ingest.handlebars._fast_renderer) give what
pybars gives, value for value, quirks included; other shapes still go through pybars."""

from __future__ import annotations

from typing import Any

import pytest

from openprofiles.ingest import handlebars
from openprofiles.ingest.handlebars import render, render_with_pybars

PLAIN = "{{_source.CustomerEndpoint.Address}}"
IF_EQUALS = (
    '{{#ifEquals _source.CustomerEndpoint.Type "EMAIL_ADDRESS"}}'
    "{{_source.CustomerEndpoint.Address}}{{/ifEquals}}"
)
INDEXED = "{{_source.items.1.id}}"
LENGTH = "{{_source.items.length}}"
FAST_SHAPES = [PLAIN, IF_EQUALS, INDEXED, LENGTH, f"  {PLAIN}\n", "{{_source.n}}"]

DOCUMENTS: list[dict[str, Any]] = [
    {"CustomerEndpoint": {"Type": "EMAIL_ADDRESS", "Address": "kim@example.com"}},
    {"CustomerEndpoint": {"Type": "TELEPHONE_NUMBER", "Address": "+12065550100"}},
    {"CustomerEndpoint": {"Type": "EMAIL_ADDRESS", "Address": "  padded@example.com  "}},
    {"CustomerEndpoint": {"Type": "EMAIL_ADDRESS", "Address": None}},
    {"CustomerEndpoint": {"Type": "EMAIL_ADDRESS"}},
    {"CustomerEndpoint": {"Type": "EMAIL_ADDRESS", "Address": {"nested": ["a", 1, True]}}},
    {"CustomerEndpoint": {"Type": "EMAIL_ADDRESS", "Address": ["x", {"y": None}]}},
    {"CustomerEndpoint": {"Type": "EMAIL_ADDRESS", "Address": 12.50}},
    {"CustomerEndpoint": {"Type": "EMAIL_ADDRESS", "Address": False}},
    {"CustomerEndpoint": {"Type": "EMAIL_ADDRESS", "Address": "Zoë 🙂"}},
    {"CustomerEndpoint": {"Type": "email_address", "Address": "case@example.com"}},
    {"CustomerEndpoint": {"Type": ["EMAIL_ADDRESS"], "Address": "list@example.com"}},
    {"CustomerEndpoint": "a string, not an object"},
    {"CustomerEndpoint": None},
    {"CustomerEndpoint": []},
    {},
    {"items": [{"id": "first"}, {"id": 2}], "n": 0},
    {"items": [{"id": "only"}]},
    {"items": "not a list"},
    {"items": {"1": {"id": "a map keyed by a number"}, "length": 9}},
    {"items": [], "n": -0.0},
]


def outcome(render_it: Any, source: str, document: dict[str, Any]) -> tuple[str, str]:
    try:
        return ("text", render_it(source, document))
    except Exception as error:  # noqa: BLE001 — the kind of failure is what is compared
        return ("error", type(error).__name__)


@pytest.mark.parametrize("source", FAST_SHAPES)
@pytest.mark.parametrize("document", DOCUMENTS, ids=range(len(DOCUMENTS)))
def test_a_fast_shape_renders_as_pybars_does(source: str, document: dict[str, Any]) -> None:
    assert handlebars._fast_renderer(source) is not None
    assert outcome(render, source, document) == outcome(render_with_pybars, source, document)


def test_the_contact_record_templates_fields_take_the_fast_shapes() -> None:
    assert render(IF_EQUALS, DOCUMENTS[0]) == "kim@example.com"
    assert render(IF_EQUALS, DOCUMENTS[1]) == ""


@pytest.mark.parametrize(
    "source",
    [
        '{{#ifEquals _source.a "x"}}{{_source.b}}{{else}}no{{/ifEquals}}',
        '{{#ifEquals _source.a "x"}}[{{_source.b}}]{{/ifEquals}}',
        "{{_source.a}} {{_source.b}}",
        "{{#if _source.a}}{{_source.b}}{{/if}}",
        '{{#ifEquals _source.a "x/y"}}{{_source.b}}{{/ifEquals}}',
        "{{#ifEquals _source.a 'x'}}{{_source.b}}{{/ifEquals}}",
    ],
)
def test_other_shapes_go_through_pybars(source: str) -> None:
    assert handlebars._fast_renderer(source) is None
    document = {"a": "x", "b": "shown"}
    assert render(source, document) == render_with_pybars(source, document)
