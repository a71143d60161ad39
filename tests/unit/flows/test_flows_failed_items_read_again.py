"""A run asked for reads again an item that failed, unchanged, applying only what of it was not
applied — on SQLite and PostgreSQL.

An item set aside after crashing runs (test_flows_crashing_items) had most of its records
applied: all but the records set aside, or those before where its reading broke off. The run
its dead letter asks for (openprofiles flows run, Run now) read it again from its first record,
so a record applied long ago was applied again over what a later item had brought since: a
customer's new address went back to the old one. Now the failed checkpoint keeps what was not
applied, and the run applies exactly that: the records set aside, and those after the stop.

A run that crashes again while it reads such an item, its cause not fixed, leaves the item
failed: it used to count it as a first crash (CRASHED_MARK), which put it back into the loop
of automatic runs stopping on it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError
from tests.unit.integrations.integ_helpers import make_domain

from openprofiles.context import Services
from openprofiles.flows import checkpoints as flow_checkpoints
from openprofiles.flows import service as flows
from openprofiles.flows.sources import FolderSource
from openprofiles.profiles.service import SearchCriterion, search_profiles

from .test_flows_crashing_items import allow_large, refuse_large, watch
from .test_flows_failed_items import EVENT, TYPE, counts, ingested, jsonl, letters, user
from .test_flows_one_run_at_a_time import runs
from .test_flows_resumed_items import BreakingSource
from .test_flows_resumed_items import streamed as streamed  # a fixture
from .test_flows_templates import D, flow_definition, put_flow


def person(n: int, **more: Any) -> dict[str, Any]:
    """Zendesk user `n`, a profile of its own (no key shared with the others)."""
    return user(n, external_id=f"e{n}", phone=f"+1555000{n:04d}", **more)


def email(services: Services, n: int) -> Any:
    """The e-mail address of the profile of Zendesk user `n`."""
    with services.read() as tx:
        page, _ = search_profiles(
            tx, domain_name=D, criteria=[SearchCriterion("_zendeskUserId", (str(n),))]
        )
    [(profile, *_)] = page
    return profile.fields.get("EmailAddress")


def set_aside(services: Services, folder: Path) -> None:
    """a.jsonl: user 1 (old@), a record the database refuses, user 3 — set aside after
    CRASH_ATTEMPTS watcher passes, users 1 and 3 applied, the refused record dead-lettered."""
    make_domain(services, D)
    refuse_large(services)
    (folder / "a.jsonl").write_text(
        jsonl(person(1, email="old@example.com"), person(2, notes="x" * 30), person(3))
    )
    put_flow(services, "crm", TYPE, flow_definition("crm", "file://", str(folder), trigger=EVENT))
    for _ in range(flow_checkpoints.CRASH_ATTEMPTS):
        watch(services)
    assert ingested(services, 1, 2, 3) == [1, 3]
    assert len(letters(services)) == 1


def test_reading_a_failed_item_again_applies_only_the_records_set_aside(
    services: Services, tmp_path: Path
) -> None:
    folder = tmp_path / "export"
    folder.mkdir()
    set_aside(services, folder)
    # A later export brings user 1's new address.
    (folder / "b.jsonl").write_text(jsonl(person(1, email="new@example.com")))
    [later] = watch(services)
    assert counts(later) == ("COMPLETED", 1, 1, 1, 0)
    assert email(services, 1) == "new@example.com"

    allow_large(services)
    again = flows.run_flow(services, domain_name=D, flow_name="crm")
    # Only the record set aside is read into the pipeline: user 1's old record is not applied
    # over the new one.
    assert counts(again) == ("COMPLETED", 1, 1, 1, 0)
    assert ingested(services, 2) == [2]
    assert email(services, 1) == "new@example.com"
    # Done: no run reads it again.
    assert watch(services) == []
    assert counts(flows.run_flow(services, domain_name=D, flow_name="crm")) == (
        "COMPLETED",
        0,
        0,
        0,
        0,
    )


@pytest.mark.usefixtures("streamed")
def test_reading_again_an_item_whose_reading_broke_off_applies_the_rest_only(
    services: Services, tmp_path: Path
) -> None:
    """An item whose reading raised on its last attempt after its first records: a run asked
    for applies the records after them, not those."""
    make_domain(services, D)
    folder = tmp_path / "export"
    folder.mkdir()
    records = [person(1, email="old@example.com"), *(person(n) for n in range(2, 8))]
    (folder / "a.jsonl").write_text(jsonl(*records))
    put_flow(services, "crm", TYPE, flow_definition("crm", "file://", str(folder), trigger=EVENT))
    breaking = BreakingSource(
        FolderSource(services.settings, str(folder)),
        "a.jsonl",
        len(jsonl(*records[:5]).encode()),
        RuntimeError("a bug"),
    )
    for _ in range(flow_checkpoints.CRASH_ATTEMPTS - 1):
        with pytest.raises(RuntimeError):
            flows.run_flow(
                services, domain_name=D, flow_name="crm", trigger="Event", source=breaking
            )
    last = flows.run_flow(
        services, domain_name=D, flow_name="crm", trigger="Event", source=breaking
    )
    assert counts(last) == ("COMPLETED", 1, 1, 0, 1)
    assert ingested(services, *range(1, 8)) == [1, 2, 3, 4]
    (folder / "b.jsonl").write_text(jsonl(person(1, email="new@example.com")))
    assert counts(watch(services)[0]) == ("COMPLETED", 1, 1, 1, 0)

    # The bug fixed (the folder read as it is): records 5 to 7 are read, 1 to 4 passed over.
    again = flows.run_flow(services, domain_name=D, flow_name="crm")
    assert counts(again) == ("COMPLETED", 1, 3, 3, 0)
    assert ingested(services, *range(1, 8)) == list(range(1, 8))
    assert email(services, 1) == "new@example.com"
    assert watch(services) == []


def test_a_crash_while_a_failed_item_is_read_again_leaves_it_failed(
    services: Services, tmp_path: Path
) -> None:
    folder = tmp_path / "export"
    folder.mkdir()
    set_aside(services, folder)
    before = len(runs(services))

    # Run now, the cause not fixed: the run fails, saying the item stays failed.
    with pytest.raises(IntegrityError):
        flows.run_flow(services, domain_name=D, flow_name="crm")
    # Still failed, not counted as a crash: no automatic run stops on it again.
    for _ in range(flow_checkpoints.CRASH_ATTEMPTS + 1):
        assert watch(services) == []
    assert len(runs(services)) == before + 1
    assert len(letters(services)) == 1
    [stopped, *_] = runs(services)
    assert stopped.status == "FAILED"
    assert stopped.error is not None and "which had failed: the item stays failed" in stopped.error

    # Its cause fixed, the next run asked for applies the record set aside.
    allow_large(services)
    again = flows.run_flow(services, domain_name=D, flow_name="crm")
    assert counts(again) == ("COMPLETED", 1, 1, 1, 0)
    assert ingested(services, 1, 2, 3) == [1, 2, 3]
