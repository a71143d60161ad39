"""A Source template's render is bounded for each record (ingest.handlebars `_Budget`): a
60-character template of two nested `#each` over a 5,000-item array took 25 million iterations
and half a minute, holding the writer and every other request (found by a fuzz of the wire API);
now the render stops at MAX_RENDER_STEPS iterations or MAX_RENDER_CHARS characters of values,
and the record is refused (dead-lettered by its caller) saying why."""

from __future__ import annotations

import pytest
from tests.unit.ingest.conftest import crm_type, ingest, make_domain, put_type

from openprofiles.context import Services
from openprofiles.ingest.handlebars import (
    MAX_RENDER_CHARS,
    MAX_RENDER_STEPS,
    TemplateError,
    render,
    render_with_pybars,
)
from openprofiles.ingest.pipeline import IngestRejected

NESTED = "{{#each _source.a}}{{#each ../_source.a}}x{{/each}}{{/each}}"
FLAT = "{{#each _source.a}}{{this}}{{/each}}"


def test_nested_loops_over_a_long_array_stop_at_the_bound() -> None:
    # 200 items: 40,200 iterations, which rendered 40,000 x's before.
    with pytest.raises(TemplateError, match=f"more than {MAX_RENDER_STEPS:,} #each iterations"):
        render(NESTED, {"a": [0] * 200})
    # Well under the bound, the same template renders.
    assert render(NESTED, {"a": [0] * 3}) == "x" * 9


def test_the_bound_counts_every_iteration_of_one_render() -> None:
    assert render(FLAT, {"a": [1] * MAX_RENDER_STEPS}) == "1" * MAX_RENDER_STEPS
    with pytest.raises(TemplateError, match="#each iterations"):
        render(FLAT, {"a": [1] * (MAX_RENDER_STEPS + 1)})
    # Outside a record's mapping each render has its own: the one before did not use up the
    # next one's.
    assert render(FLAT, {"a": [1] * MAX_RENDER_STEPS}) == "1" * MAX_RENDER_STEPS


def test_values_written_over_and_over_stop_at_the_character_bound() -> None:
    long_value = "y" * 1_000
    repeated = "{{#each _source.a}}{{../_source.b}}{{/each}}"
    times = MAX_RENDER_CHARS // len(long_value)
    assert len(render(repeated, {"a": [0] * times, "b": long_value})) == MAX_RENDER_CHARS
    with pytest.raises(TemplateError, match=f"more than {MAX_RENDER_CHARS:,} characters"):
        render(repeated, {"a": [0] * (times + 1), "b": long_value})


def test_the_bound_holds_through_pybars_too() -> None:
    """`render_with_pybars` (what the fast shapes are checked against) renders the same way."""
    with pytest.raises(TemplateError, match="#each iterations"):
        render_with_pybars(NESTED, {"a": [0] * 200})


def test_a_record_past_the_bound_is_refused_saying_why(services: Services) -> None:
    make_domain(services)
    fields = crm_type()["Fields"] | {
        "visits": {"Source": NESTED, "Target": "_profile.Attributes.Visits"}
    }
    put_type(services, "Crm", crm_type(Fields=fields))

    with pytest.raises(IngestRejected) as refused:
        ingest(services, "Crm", {"id": "1", "email": "a@x.com", "a": [0] * 200})

    assert refused.value.reason.startswith("Field visits: its Source template failed: ")
    assert f"more than {MAX_RENDER_STEPS:,} #each iterations" in refused.value.reason
    # The next record, within the bound, is applied.
    assert ingest(services, "Crm", {"id": "2", "email": "b@x.com", "a": [0, 1]}).profile_id


def test_all_the_fields_of_a_record_share_one_bound(services: Services) -> None:
    """A budget for each field's render let an object type of 250 fields, each just under the
    bound, take 2.5 million iterations (seconds, in the write transaction) for one record."""
    make_domain(services)
    third = MAX_RENDER_STEPS // 3 + 1
    fields = crm_type()["Fields"] | {f"loop{n}": {"Source": FLAT} for n in range(3)}
    put_type(services, "Crm", crm_type(Fields=fields))

    with pytest.raises(IngestRejected) as refused:
        ingest(services, "Crm", {"id": "1", "email": "a@x.com", "a": [0] * third})

    assert refused.value.reason.startswith("Field loop2: its Source template failed: ")
    # Each field alone is well within it, and two thirds of it pass for the whole record.
    assert render(FLAT, {"a": [0] * third}) == "0" * third
    assert ingest(services, "Crm", {"id": "2", "email": "b@x.com", "a": [0] * (third - 2)})


def test_the_characters_are_bounded_for_each_field_not_for_the_record(
    services: Services,
) -> None:
    """One field holds at most what its object holds, but several may each hold as much: a
    character count shared by the record's fields refused a 100 KB record with three."""
    make_domain(services)
    fields = crm_type()["Fields"] | {
        f"copy{n}": {"Source": "{{_source.n}} {{_source.m}}"} for n in range(3)
    }
    put_type(services, "Crm", crm_type(Fields=fields))
    half = "z" * (MAX_RENDER_CHARS // 2 - 1)

    assert ingest(services, "Crm", {"id": "1", "email": "a@x.com", "n": half, "m": half})
