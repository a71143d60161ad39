"""A failed item with more records set aside than 255 characters can name, read again, applies
those records only — on SQLite and PostgreSQL.

A failed item's checkpoint (flows.checkpoints: FAILED_MARK) names the records of it not applied,
and a run asked for applies those only (test_flows_failed_items_read_again). It was held to 255
characters (flow_item.version was String(255)): when more records were set aside than it could
name, the records from the first one left unnamed on were all applied again, those applied
already among them, over what later items had brought since (a customer's new address going back
to the old one). Migration 0040 made the column text, and the checkpoint names every record set
aside."""

from __future__ import annotations

from pathlib import Path

from tests.unit.integrations.integ_helpers import make_domain

from openprofiles.context import Services
from openprofiles.flows import checkpoints as flow_checkpoints
from openprofiles.flows import service as flows

from .test_flows_crashing_items import allow_large, refuse_large, watch
from .test_flows_failed_items import EVENT, TYPE, counts, ingested, jsonl, letters
from .test_flows_failed_items_read_again import email, person
from .test_flows_templates import D, flow_definition, put_flow

# Records of the item; every odd one is refused by the database, and set aside on its last
# attempt: 100 positions, "1,3,5,...,199", far more than 255 characters.
RECORDS = 200


def test_every_record_set_aside_is_named_and_only_those_are_applied_again(
    services: Services, tmp_path: Path
) -> None:
    make_domain(services, D)
    refuse_large(services)
    folder = tmp_path / "export"
    folder.mkdir()
    records = [
        person(n, notes="x" * 30) if n % 2 else person(n, email=f"old{n}@example.com")
        for n in range(1, RECORDS + 1)
    ]
    (folder / "a.jsonl").write_text(jsonl(*records))
    put_flow(services, "crm", TYPE, flow_definition("crm", "file://", str(folder), trigger=EVENT))
    for _ in range(flow_checkpoints.CRASH_ATTEMPTS):
        watch(services)
    evens = list(range(2, RECORDS + 1, 2))
    assert ingested(services, *range(1, RECORDS + 1)) == evens
    assert len(letters(services)) == RECORDS // 2
    # A later export brings the last user's new address.
    (folder / "b.jsonl").write_text(jsonl(person(RECORDS, email="new@example.com")))
    [later] = watch(services)
    assert counts(later) == ("COMPLETED", 1, 1, 1, 0)

    allow_large(services)
    again = flows.run_flow(services, domain_name=D, flow_name="crm")
    # The records set aside, and only those: none applied before is applied again.
    assert counts(again) == ("COMPLETED", 1, RECORDS // 2, RECORDS // 2, 0)
    assert ingested(services, *range(1, RECORDS + 1)) == list(range(1, RECORDS + 1))
    assert email(services, RECORDS) == "new@example.com"
    assert email(services, RECORDS - 2) == f"old{RECORDS - 2}@example.com"
    # Done: no run reads it again.
    assert watch(services) == []
    assert counts(flows.run_flow(services, domain_name=D, flow_name="crm"))[1:] == (0, 0, 0, 0)
