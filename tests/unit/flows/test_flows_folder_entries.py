"""Every file of a flow's folder is read or dead-lettered with its reason, whatever the others
are: a file whose name is not UTF-8, a link out of the folders flows may read, a loop of links
are each that file's affair (read, or a failed item), never the run's. A file read before that
cannot be looked at for a while (its folder's x permission taken away, a network mount answering
EIO: here a folder on its links' way replaced by a loop of links) is passed over, not
dead-lettered and read again, unchanged, once it can be looked at."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tests.unit.integrations.integ_helpers import make_domain

from openprofiles.context import Services
from openprofiles.flows.checkpoints import is_pending
from openprofiles.flows.runs import list_runs
from openprofiles.flows.service import run_due_flows, run_flow
from openprofiles.flows.sources import UNREADABLE_VERSION, SourceItem

from .test_flows_failed_items import EVENT, TYPE, counts, ingested, jsonl, letters, user
from .test_flows_templates import D, flow_definition, put_flow


@pytest.fixture
def folder(services: Services, tmp_path: Path) -> Path:
    """The export folder of an Event flow "crm" (domain D), with a.jsonl (user 1) and c.jsonl
    (user 3), put once the test has added its files (`event_flow`)."""
    make_domain(services, D)
    export = tmp_path / "export"
    export.mkdir()
    (export / "a.jsonl").write_text(jsonl(user(1)))
    (export / "c.jsonl").write_text(jsonl(user(3)))
    return export


def event_flow(services: Services, folder: Path) -> None:
    put_flow(services, "crm", TYPE, flow_definition("crm", "file://", str(folder), trigger=EVENT))


def test_a_file_whose_name_is_not_utf8_is_read_under_its_name_written_out(
    services: Services, folder: Path
) -> None:
    raw = os.fsencode(folder)
    # Names as a Latin-1 system writes them: os.scandir gives their bytes as lone surrogates.
    with open(raw + b"/b\xff.jsonl", "wb") as good:
        good.write(jsonl(user(2)).encode())
    with open(raw + b"/d\xe9.jsonl", "wb") as bad:
        bad.write(b"not json\n")
    event_flow(services, folder)
    now = datetime.now(UTC)

    [run] = run_due_flows(services, now=now)
    assert counts(run) == ("COMPLETED", 4, 4, 3, 1) and run.error is None
    assert ingested(services, 1, 2, 3) == [1, 2, 3]
    # The dead letter names the file with its byte written out, and says why.
    [letter] = letters(services)
    assert f"{folder}/d\\xe9.jsonl" in letter.reason
    assert "neither JSON nor JSON lines" in letter.reason
    # Checkpointed under that name: the next passes find nothing new.
    assert run_due_flows(services, now=now + timedelta(seconds=10)) == []
    run = run_flow(services, domain_name=D, flow_name="crm", complete=False)
    # An incremental run asked for reads again only the failed file.
    assert counts(run) == ("COMPLETED", 1, 1, 0, 1)


def test_a_link_out_of_the_roots_is_a_failed_item_not_naming_them(
    services: Services, folder: Path, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    outside = tmp_path_factory.mktemp("outside") / "secret.jsonl"
    outside.write_text(jsonl(user(99)))
    (folder / "b.jsonl").symlink_to(outside)
    event_flow(services, folder)
    now = datetime.now(UTC)

    [run] = run_due_flows(services, now=now)
    assert counts(run) == ("COMPLETED", 3, 3, 2, 1) and run.error is None
    assert ingested(services, 1, 3, 99) == [1, 3]
    [letter] = letters(services)
    assert f"The file {folder}/b.jsonl is a link to a path outside the folders" in letter.reason
    # The server's roots and setting are the operator's: not told to the domain's admins.
    assert f"({tmp_path.resolve()}" not in letter.reason
    assert "FLOW_FOLDER_ROOTS" not in letter.reason and str(outside) not in letter.reason
    # Dead-lettered once: the watcher does not fail a run on it every pass.
    assert run_due_flows(services, now=now + timedelta(seconds=10)) == []


def test_a_loop_of_links_is_a_failed_item(services: Services, folder: Path) -> None:
    (folder / "b.jsonl").symlink_to(folder / "b.jsonl")
    event_flow(services, folder)
    now = datetime.now(UTC)

    [run] = run_due_flows(services, now=now)
    assert counts(run) == ("COMPLETED", 3, 3, 2, 1) and run.error is None
    assert ingested(services, 1, 3) == [1, 3]
    [letter] = letters(services)
    assert f"The file {folder}/b.jsonl cannot be read" in letter.reason
    assert run_due_flows(services, now=now + timedelta(seconds=10)) == []
    # Mended (the link made again, to a file), it is read.
    (folder / "b.jsonl").unlink()
    (folder / "b.jsonl").write_text(jsonl(user(2)))
    [run] = run_due_flows(services, now=now + timedelta(seconds=20))
    assert counts(run) == ("COMPLETED", 1, 1, 1, 0)
    assert ingested(services, 2) == [2]


def test_a_file_the_listing_cannot_look_at_stops_no_other(services: Services, folder: Path) -> None:
    """The listing goes on past an entry it cannot stat (here a loop of links, which fails
    DirEntry.is_file with ELOOP), as `openprofiles flows run` does: no raw OSError."""
    (folder / "b.jsonl").symlink_to(folder / "b2.jsonl")
    (folder / "b2.jsonl").symlink_to(folder / "b.jsonl")
    put_flow(services, "crm", TYPE, flow_definition("crm", "file://", str(folder)))

    run = run_flow(services, domain_name=D, flow_name="crm")
    assert counts(run) == ("COMPLETED", 4, 4, 2, 2) and run.error is None
    reasons = sorted(letter.reason for letter in letters(services))
    assert [f"{folder}/b.jsonl cannot be read" in r for r in reasons] == [True, False]
    assert [f"{folder}/b2.jsonl cannot be read" in r for r in reasons] == [False, True]


class Outage:
    """Files of the export folder that are links into a folder `targets` (of `tmp_path`), which
    `begin` makes impossible to look at, as a folder whose x permission is taken away or a
    network mount answering EIO is (root, who runs the tests in CI, ignores permissions: here
    it is replaced by a link to itself, so every path through it is a loop of links), and `end`
    puts back as it was: the files in it never changed."""

    def __init__(self, tmp_path: Path) -> None:
        self.targets = tmp_path / "targets"
        self.away = tmp_path / "targets.away"
        self.targets.mkdir()

    def link(self, folder: Path, name: str, content: str) -> None:
        """folder/name, a link to a file of `targets` (wherever that is now) holding `content`."""
        where = self.away if self.targets.is_symlink() else self.targets
        (where / name).write_text(content)
        (folder / name).symlink_to(self.targets / name)

    def begin(self) -> None:
        self.targets.rename(self.away)
        self.targets.symlink_to(self.targets)

    def end(self) -> None:
        self.targets.unlink()
        self.away.rename(self.targets)


def ingested_in_all(services: Services) -> int:
    with services.read() as tx:
        return sum(run.records_ingested for run in list_runs(tx, domain_name=D, flow_name="crm"))


def test_a_file_read_before_is_not_read_again_after_it_could_not_be_looked_at(
    services: Services, folder: Path, tmp_path: Path
) -> None:
    outage = Outage(tmp_path)
    outage.link(folder, "b.jsonl", jsonl(user(2)))
    event_flow(services, folder)
    now = datetime.now(UTC)
    [run] = run_due_flows(services, now=now)
    assert counts(run) == ("COMPLETED", 3, 3, 3, 0)

    outage.begin()
    # A file never read, added meanwhile: it cannot be looked at either, and is dead-lettered
    # saying why (nothing of it lost without a word); b.jsonl, read before, is passed over.
    outage.link(folder, "d.jsonl", jsonl(user(4)))
    [run] = run_due_flows(services, now=now + timedelta(seconds=10))
    assert counts(run) == ("COMPLETED", 1, 1, 0, 1)
    [letter] = letters(services)
    assert f"The file {folder}/d.jsonl cannot be read: a loop of links" in letter.reason
    # Nothing more to do while it lasts: the Event checks start no run.
    assert run_due_flows(services, now=now + timedelta(seconds=20)) == []
    # An incremental run asked for reads the failed file again, not b.jsonl.
    run = run_flow(services, domain_name=D, flow_name="crm", complete=False)
    assert counts(run) == ("COMPLETED", 1, 1, 0, 1)
    [letter] = letters(services)
    assert letter.attempts == 2

    outage.end()
    # Looked at again: d.jsonl is read; b.jsonl, unchanged, is not read a second time.
    [run] = run_due_flows(services, now=now + timedelta(seconds=30))
    assert counts(run) == ("COMPLETED", 1, 1, 1, 0)
    assert ingested(services, 1, 2, 3, 4) == [1, 2, 3, 4]
    assert run_due_flows(services, now=now + timedelta(seconds=40)) == []
    assert ingested_in_all(services) == 4
    assert len(letters(services)) == 1


def test_a_complete_run_passes_over_a_file_it_cannot_look_at_unless_asked_for(
    services: Services, folder: Path, tmp_path: Path
) -> None:
    """A scheduled Complete run reads every item but one read before that cannot be looked at
    now; a run asked for reads every item, and dead-letters that one, saying why."""
    outage = Outage(tmp_path)
    outage.link(folder, "b.jsonl", jsonl(user(2)))
    schedule = {"ScheduleExpression": "rate(1 hours)", "DataPullMode": "Complete"}
    trigger = {"TriggerType": "Scheduled", "TriggerProperties": {"Scheduled": schedule}}
    put_flow(services, "crm", TYPE, flow_definition("crm", "file://", str(folder), trigger=trigger))
    now = datetime.now(UTC)
    [run] = run_due_flows(services, now=now)
    assert counts(run) == ("COMPLETED", 3, 3, 3, 0)

    outage.begin()
    [run] = run_due_flows(services, now=now + timedelta(hours=2))
    assert counts(run) == ("COMPLETED", 2, 2, 2, 0)
    assert letters(services) == []
    outage.end()
    [run] = run_due_flows(services, now=now + timedelta(hours=4))
    assert counts(run) == ("COMPLETED", 3, 3, 3, 0)

    outage.begin()
    run = run_flow(services, domain_name=D, flow_name="crm")
    assert counts(run) == ("COMPLETED", 3, 3, 2, 1)
    [letter] = letters(services)
    assert f"The file {folder}/b.jsonl cannot be read: a loop of links" in letter.reason
    outage.end()
    [run] = run_due_flows(services, now=now + timedelta(hours=6))
    assert counts(run) == ("COMPLETED", 3, 3, 3, 0)


@pytest.mark.parametrize(
    "checkpoint",
    ["1700000000000000000-40", "partial:3:1700000000000000000-40", "crashed:1:3:1-40", "failed:x"],
)
def test_an_item_read_before_that_cannot_be_looked_at_keeps_its_checkpoint(
    checkpoint: str,
) -> None:
    """Whatever a run left of it (read whole, begun, stopped on, failed), an item that cannot
    be looked at now is not pending: read, it would be dead-lettered and checkpointed as failed,
    and read again from its start once it can be looked at (a begun item's first records applied
    again over what came since). One never read is."""
    item = SourceItem("b.jsonl", UNREADABLE_VERSION)
    assert not is_pending(checkpoint, item)
    assert is_pending(None, item)
