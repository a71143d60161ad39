"""The handler registry matches the model, and docs/api-coverage.md tells the truth."""

from __future__ import annotations

from pathlib import Path

from openprofiles.api_coverage import render
from openprofiles.app import HANDLER_MODULES
from openprofiles.wire.model import load_service_model
from openprofiles.wire.registry import build_registry, snake_case

DOC = Path(__file__).resolve().parents[3] / "docs" / "api-coverage.md"


def test_every_handler_is_named_after_a_model_operation():
    model = load_service_model()
    registry = build_registry(HANDLER_MODULES, model)
    assert registry, "no handlers registered"
    for operation, handler in registry.items():
        assert operation in model.operation_names
        assert handler.__name__ == snake_case(operation)


def _doc_rows() -> dict[str, bool]:
    rows = {}
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 3 and cells[2] in ("yes", "no"):
            rows[cells[0]] = cells[2] == "yes"
    return rows


def test_api_coverage_doc_is_current():
    """Every implemented operation is marked so, and nothing else is.

    Operations that a newer botocore adds are not yet in the file, and may be missing from it
    (they are unimplemented by definition); all else must agree with the registry.
    """
    model = load_service_model()
    registry = build_registry(HANDLER_MODULES, model)
    rows = _doc_rows()
    stale = "docs/api-coverage.md is stale: run `python -m openprofiles.api_coverage`"
    assert {op for op, done in rows.items() if done} == set(registry), stale
    assert set(registry) <= set(rows), stale


def test_render_marks_implemented_operations():
    model = load_service_model()
    text = render({"CreateDomain": object()}, model)
    assert "| CreateDomain | `POST /domains/{DomainName}` | yes |" in text
    assert "| GetDomain | `GET /domains/{DomainName}` | no |" in text
    assert f"Implemented: 1 of {len(model.operation_names)} operations" in text


def test_operations_run_on_the_event_loop_are_implemented_model_operations():
    """A misspelt name would quietly send that operation back to worker threads."""
    from openprofiles.app import ON_THE_LOOP_OPERATIONS

    registry = build_registry(HANDLER_MODULES, load_service_model())
    assert not ON_THE_LOOP_OPERATIONS - registry.keys()
