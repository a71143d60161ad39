"""What a Source template does with the data it is given and with odd templates (a review of
the Handlebars subset, spec §1.2): paths follow JSON only, never Python attributes or methods
(`{{#if _source.sep.join}}` called `",".join(...)` without end and froze the server;
`{{_source.name.title}}` stored a bound method's repr); odd indices are missing, not a 500;
`{{else}}` works in `#unless`, `#with` and `#each`; a render fails with TemplateError only;
nesting, size and the compiled-template cache are bounded."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from tests.unit.ingest.conftest import DOMAIN, crm_type, ingest, make_domain, put_type
from tests.unit.object_types.conftest import profile_mapping

import openprofiles.ingest.handlebars as handlebars
from openprofiles.context import Services
from openprofiles.errors import BadRequest
from openprofiles.ingest.handlebars import (
    MAX_BLOCK_DEPTH,
    MAX_CACHED_TEMPLATES,
    TemplateError,
    compile_template,
    render,
    render_with_pybars,
)
from openprofiles.object_types import service
from openprofiles.object_types.validation import MAX_TEMPLATE_TAGS, validate_definition

RENDERERS = pytest.mark.parametrize("renderer", [render, render_with_pybars])


@RENDERERS
@pytest.mark.parametrize(
    ("source", "document"),
    [
        ("{{_source.name.title}}", {"name": "bob"}),
        ("{{#if _source.name.upper}}called{{/if}}", {"name": "bob"}),
        ("{{#if _source.d.clear}}called{{/if}}", {"d": {"k": 1}}),
        ("{{#if _source.order.items}}called{{/if}}", {"order": {}}),
        ("{{_source.order.items}}{{_source.order.keys}}", {"order": {"n": 1}}),
        ("{{#each _source.a}}{{this.__class__}}{{/each}}", {"a": [1]}),
        ("{{#with _source.a}}{{__len__}}{{/with}}", {"a": [1]}),
    ],
)
def test_a_path_never_reaches_a_python_attribute(renderer: Any, source: str, document: Any) -> None:
    assert renderer(source, document) == ""


@RENDERERS
def test_a_method_named_by_a_path_is_never_called(renderer: Any) -> None:
    """`",".join(Scope)` never ended: one record froze the whole server."""
    assert renderer("{{#if _source.sep.join}}x{{/if}}", {"sep": ","}) == ""


@RENDERERS
@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("[{{_source.a.5}}]", "[]"),
        ("x{{_source.a.x}}", "x"),
        ("[{{_source.a.-1}}]", "[]"),
        ("{{_source.a.1}}", "2"),
        ("{{_source.a.length}}", "2"),
        ("{{#if _source.a.7}}yes{{else}}no{{/if}}", "no"),
    ],
)
def test_an_index_that_is_no_item_is_missing(renderer: Any, source: str, expected: str) -> None:
    assert renderer(source, {"a": [1, 2]}) == expected


@RENDERERS
@pytest.mark.parametrize(
    ("source", "document", "expected"),
    [
        ("{{#unless _source.a}}yes{{else}}no{{/unless}}", {"a": 1}, "no"),
        ("{{#unless _source.a}}yes{{else}}no{{/unless}}", {}, "yes"),
        ("{{#with _source.addr}}{{city}}, {{zip}}{{else}}none{{/with}}", {}, "none"),
        ("[{{#with _source.addr}}{{city}}, {{zip}}{{/with}}]", {}, "[]"),
        (
            "{{#with _source.addr}}{{city}}, {{zip}}{{/with}}",
            {"addr": {"city": "Paris", "zip": "75001"}},
            "Paris, 75001",
        ),
        ("{{#with _source.a}}{{../_source.b}}{{/with}}", {"a": {"x": 1}, "b": "B"}, "B"),
        ("[{{#each _source.a}}{{this}};{{/each}}]", {"a": "abc"}, "[]"),
        ("{{#each _source.a}}{{this}};{{else}}none{{/each}}", {"a": "abc"}, "none"),
        ("{{#each _source.a}}{{this}};{{else}}none{{/each}}", {"a": []}, "none"),
        ("{{#each _source.a}}{{@index}}={{this}};{{/each}}", {"a": ["p", "q"]}, "0=p;1=q;"),
        ("{{#each _source.a}}{{@key}}={{this}};{{/each}}", {"a": {"p": 1, "q": [2]}}, "p=1;q=[2];"),
        ("{{#each _source.a}}{{../_source.b}}{{/each}}", {"a": [1, 2], "b": "B"}, "BB"),
    ],
)
def test_else_and_the_scoping_blocks(
    renderer: Any, source: str, document: Any, expected: str
) -> None:
    assert renderer(source, document) == expected


@RENDERERS
def test_a_render_fails_with_template_error_only(renderer: Any, monkeypatch: Any) -> None:
    """The mapping catches TemplateError (dead-letters the record): anything else was a 500."""

    def broken(*_: Any) -> str:
        raise RuntimeError("a fault of the module")

    monkeypatch.setitem(handlebars.HELPERS, "as@text", broken)
    with pytest.raises(TemplateError, match="could not be rendered"):
        renderer("a {{_source.x}} {{_source.y}}", {"x": 1})


@RENDERERS
def test_long_comments_and_escaped_mustaches(renderer: Any) -> None:
    document = {"id": "7"}
    assert renderer("{{!-- {{_source.id}} --}}{{_source.id}}", document) == "7"
    assert renderer("{{! a note }}{{_source.id}}", document) == "7"
    assert renderer("\\{{_source.id}} is {{_source.id}}", document) == "{{_source.id}} is 7"
    assert renderer("\\\\{{_source.id}}", document) == "\\7"
    assert renderer("a {{~! a note ~}}  b", document) == "ab"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{#}}", "a block needs the name of its helper"),
        ("{{#}}{{/}}", "a block needs the name of its helper"),
        (
            "{{#if _source.a}}" * (MAX_BLOCK_DEPTH + 1) + "x" + "{{/if}}" * (MAX_BLOCK_DEPTH + 1),
            f"nest more than {MAX_BLOCK_DEPTH} deep",
        ),
    ],
)
def test_an_invalid_template_is_a_template_error(source: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        compile_template(source)


def test_blocks_may_nest_to_the_bound() -> None:
    source = "{{#if _source.a}}" * MAX_BLOCK_DEPTH + "x" + "{{/if}}" * MAX_BLOCK_DEPTH
    assert render(source, {"a": 1}) == "x"


def _with_source(source: str) -> dict[str, Any]:
    definition = profile_mapping()
    definition["Fields"]["extra"] = {"Source": source, "Target": "_profile.Attributes.extra"}
    return definition


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{#}}", "a block needs the name of its helper"),
        ("{{#if _source.a}}" * 40 + "x" + "{{/if}}" * 40, "nest more than"),
    ],
)
def test_put_object_type_refuses_such_a_template_with_a_400(source: str, message: str) -> None:
    with pytest.raises(BadRequest) as refused:
        validate_definition(_with_source(source), existing_keys={})
    assert refused.value.code == "BadRequestException"
    assert "Field extra has an invalid Handlebars Source" in refused.value.message
    assert message in refused.value.message


def test_an_object_type_holds_a_bounded_number_of_expressions() -> None:
    definition = profile_mapping()
    for n in range(MAX_TEMPLATE_TAGS // 100 + 1):
        definition["Fields"][f"f{n}"] = {"Source": "{{_source.a}}" * 100}
    with pytest.raises(BadRequest, match=f"at most {MAX_TEMPLATE_TAGS:,} Handlebars"):
        validate_definition(definition, existing_keys={})


def test_compiled_templates_are_not_kept_for_good() -> None:
    """pybars registered every compiled template in sys.modules, so no cache could drop one:
    2,000 templates held 66 MB."""

    def registered() -> int:
        return sum(name.startswith("pybars._templates.") for name in list(sys.modules))

    compile_template("{{#if _source.warm}}x{{/if}}")
    before = registered()
    for n in range(5):
        compile_template(f"{{{{#if _source.unseen{n}}}}}x{{{{/if}}}}")
    assert registered() == before
    assert compile_template.cache_info().maxsize == MAX_CACHED_TEMPLATES


def test_templates_are_compiled_before_the_domain_lock(
    services: Services, monkeypatch: Any
) -> None:
    """A slow compile held the domain's object-type lock (every put of the domain waited)."""
    events: list[str] = []
    compile_pybars, take_locks = handlebars._pybars_renderer, service.take_locks

    def compiling(rewritten: str) -> Any:
        events.append("compile")
        return compile_pybars(rewritten)

    def locking(*args: Any, **kwargs: Any) -> Any:
        events.append("lock")
        return take_locks(*args, **kwargs)

    compile_template.cache_clear()  # compiled by the run on the other database
    monkeypatch.setattr(handlebars, "_pybars_renderer", compiling)
    monkeypatch.setattr(service, "take_locks", locking)
    make_domain(services)
    fields = crm_type()["Fields"] | {
        "tier": {"Source": "{{#if _source.lockOrder}}x{{/if}}", "Target": "_profile.Attributes.t"}
    }
    put_type(services, "Crm", crm_type(Fields=fields))
    assert events.index("compile") < events.index("lock")


def test_an_odd_record_is_mapped_not_failed(services: Services) -> None:
    make_domain(services)
    fields = crm_type()["Fields"] | {
        "fifth": {"Source": "{{_source.a.5}}x{{_source.a.x}}", "Target": "_profile.Attributes.f"},
        "title": {"Source": "{{_source.first.title}}", "Target": "_profile.Attributes.t"},
    }
    put_type(services, "Crm", crm_type(Fields=fields))
    assert ingest(services, "Crm", {"id": "1", "email": "a@x.com", "first": "a", "a": [1]})


def test_put_profile_object_type_compiles_before_its_write_transaction(
    services: Services, monkeypatch: Any
) -> None:
    """A slow compile inside the write transaction held SQLite's one writer: every write of
    every domain waited on pybars."""
    from openprofiles.context import Principal, RequestContext
    from openprofiles.object_types import handlers

    events: list[str] = []
    compile_pybars, write = handlebars._pybars_renderer, services.write

    def compiling(rewritten: str) -> Any:
        events.append("compile")
        return compile_pybars(rewritten)

    def writing() -> Any:
        events.append("write")
        return write()

    make_domain(services)
    compile_template.cache_clear()
    monkeypatch.setattr(handlebars, "_pybars_renderer", compiling)
    monkeypatch.setattr(services, "write", writing)
    fields = crm_type()["Fields"] | {
        "tier": {"Source": "{{#if _source.txOrder}}x{{/if}}", "Target": "_profile.Attributes.t"}
    }
    handlers.put_profile_object_type(
        RequestContext(services=services, principal=Principal("test", "admin")),
        {"DomainName": DOMAIN, "ObjectTypeName": "Crm", **crm_type(Fields=fields)},
    )
    assert events.index("compile") < events.index("write")
