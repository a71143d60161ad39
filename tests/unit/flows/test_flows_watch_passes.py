"""What an Event flow's check finds, pass after pass, in two processes that each keep the digests
of the keys they listed (flows.item_keys) — on SQLite and PostgreSQL.

A soak review found every watcher pass digesting every key its source lists (a keyed HMAC),
however few had changed; the digests are now kept between passes. What a pass finds must not
change: a new item is read, a changed one (another version) is read again, whichever process
read it before; an item read by the other process is not read again; and a domain deleted and
made again under the same name (another key, so other digests) reads its items once, afresh.
And a run forgets the checkpoints of the items gone from its source.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select
from tests.unit.integrations.integ_helpers import make_domain

from openprofiles.app import build_services
from openprofiles.context import Services
from openprofiles.domains.service import delete_domain
from openprofiles.flows.service import run_due_flows, run_flow
from openprofiles.store.schema import flow_item

from .test_flows_failed_items import EVENT, TYPE, ingested, jsonl, user
from .test_flows_templates import D, flow_definition, put_flow


@pytest.fixture
def other(services: Services) -> Iterator[Services]:
    """Another process's services on the same database (its own kept digests)."""
    built = build_services(services.settings)
    try:
        yield built
    finally:
        built.database.dispose()


def items_read(services: Services) -> list[tuple[str, int]]:
    """A pass of the watcher: the runs it made, as (status, items read)."""
    return [(r.status, r.items_read) for r in run_due_flows(services, now=datetime.now(UTC))]


def write(file: Path, *records: dict[str, object], mtime: int) -> None:
    """The file with the records, modified at `mtime` (a version of its own whatever its size)."""
    file.write_text(jsonl(*records))
    os.utime(file, ns=(mtime, mtime))


def test_new_and_changed_items_are_read_whichever_process_checks(
    services: Services, other: Services, tmp_path: Path
) -> None:
    make_domain(services, D)
    folder = tmp_path / "export"
    folder.mkdir()
    write(folder / "a.jsonl", user(1), mtime=1_000_000_000_000_000_000)
    put_flow(services, "crm", TYPE, flow_definition("crm", "file://", str(folder), EVENT))

    assert items_read(services) == [("COMPLETED", 1)]
    assert items_read(services) == []
    assert items_read(other) == []

    # Changed: the other process reads it; this one, which kept its key's digest, does not again.
    write(folder / "a.jsonl", user(1, name="Changed"), mtime=1_000_000_000_000_000_001)
    assert items_read(other) == [("COMPLETED", 1)]
    assert items_read(services) == []

    # A new item, then a change of the first: each read once, by the process that checks first.
    write(folder / "b.jsonl", user(2), mtime=1_000_000_000_000_000_002)
    assert items_read(services) == [("COMPLETED", 1)]
    assert items_read(other) == []
    write(folder / "a.jsonl", user(1, name="Again"), mtime=1_000_000_000_000_000_003)
    assert items_read(services) == [("COMPLETED", 1)]
    assert items_read(other) == []
    assert items_read(services) == []
    assert ingested(services, 1, 2) == [1, 2]

    # The domain deleted and made again (another key): both items read once, then none.
    with services.write() as tx:
        delete_domain(tx, domain_name=D)
    make_domain(services, D)
    put_flow(services, "crm", TYPE, flow_definition("crm", "file://", str(folder), EVENT))
    assert items_read(services) == [("COMPLETED", 2)]
    assert items_read(services) == []
    assert items_read(other) == []


def checkpointed(services: Services) -> int:
    with services.read() as tx:
        return int(tx.conn.execute(select(func.count()).select_from(flow_item)).scalar_one())


def test_the_checkpoints_of_items_gone_from_the_source_are_forgotten(
    services: Services, tmp_path: Path
) -> None:
    """flow_item used to keep a digest of every file name the folder ever held. A run now
    forgets the items its listing no longer holds; one put back is read again, as a new file."""
    make_domain(services, D)
    folder = tmp_path / "export"
    folder.mkdir()
    write(folder / "a.jsonl", user(1), mtime=1_000_000_000_000_000_000)
    write(folder / "b.jsonl", user(2), mtime=1_000_000_000_000_000_000)
    put_flow(services, "crm", TYPE, flow_definition("crm", "file://", str(folder), EVENT))
    assert items_read(services) == [("COMPLETED", 2)]
    assert checkpointed(services) == 2

    (folder / "b.jsonl").unlink()
    write(folder / "c.jsonl", user(3), mtime=1_000_000_000_000_000_001)
    assert items_read(services) == [("COMPLETED", 1)]
    assert checkpointed(services) == 2  # a and c

    # Put back as it was (the same version): a new item of the folder.
    write(folder / "b.jsonl", user(2), mtime=1_000_000_000_000_000_000)
    assert items_read(services) == [("COMPLETED", 1)]
    assert items_read(services) == []
    assert checkpointed(services) == 3


def test_a_source_that_lists_nothing_forgets_nothing(services: Services, tmp_path: Path) -> None:
    """A folder whose mount is missing lists nothing: forgetting every item then would read the
    whole export again once it is back."""
    make_domain(services, D)
    folder = tmp_path / "export"
    folder.mkdir()
    files = {name: folder / name for name in ("a.jsonl", "b.jsonl")}
    for n, file in enumerate(files.values(), 1):
        write(file, user(n), mtime=1_000_000_000_000_000_000)
    put_flow(services, "crm", TYPE, flow_definition("crm", "file://", str(folder), EVENT))
    assert items_read(services) == [("COMPLETED", 2)]

    moved = tmp_path / "unmounted"
    folder.rename(moved)
    folder.mkdir()
    assert run_flow(services, domain_name=D, flow_name="crm").status == "COMPLETED"
    assert checkpointed(services) == 2
    folder.rmdir()
    moved.rename(folder)
    assert items_read(services) == []
