"""The commands that count, send on and delete kept contact records tell the records waiting for
the contact they continue (contacts.links) from those kept for want of a domain, and the file
loader applies a record that waits for a contact later in the same file (both backends, a real
data dir and database)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from tests.support.contact_loader import found, loaded_data_dir
from tests.unit.integrations.integ_helpers import INSTANCE, OTHER_INSTANCE, associate, ctr, send

from openprofiles.cli import main
from openprofiles.contacts.kept import list_unrouted
from openprofiles.context import Services
from openprofiles.settings import Settings

CALLER = "+13035550100"
WAITS = (
    "wait for the contact they continue, whose record has not come; each is applied when it "
    "comes, or dead-lettered after 60 minutes without."
)
WAITS_ONE = (
    "waits for the contact it continues, whose record has not come; it is applied when it "
    "comes, or dead-lettered after 60 minutes without."
)


@pytest.fixture
def loaded(settings: Settings) -> Iterator[tuple[Services, list[str]]]:
    with loaded_data_dir(settings) as made:
        yield made


def run(options: list[str], *args: str) -> str:
    result = CliRunner().invoke(main, [*args, *options], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def a_task(contact_id: str, continues: str, instance: str = INSTANCE) -> dict[str, object]:
    return ctr(
        contact_id, channel="TASK", address=None, instance=instance, PreviousContactId=continues
    )


def test_unrouted_counts_waiting_records_apart(loaded: tuple[Services, list[str]]) -> None:
    """They were counted with the records of instances associated with no domain, under the
    same ARN column, as if an association were what they lacked."""
    services, options = loaded
    assert send(services, a_task("task-1", "call-1")).waiting == 1
    assert send(services, ctr("k-1", instance=OTHER_INSTANCE)).unrouted == {OTHER_INSTANCE: 1}

    out = run(options, "instances", "unrouted")

    assert out == (f"{OTHER_INSTANCE}  1\n{INSTANCE}  1 waiting for the contact they continue\n"), (
        out
    )
    assert run(options, "instances", "unrouted", "--instance", INSTANCE) == (
        f"{INSTANCE}  1 waiting for the contact they continue\n"
    )


def test_purge_unrouted_leaves_the_waiting_records_and_says_so(
    loaded: tuple[Services, list[str]],
) -> None:
    """`purge-unrouted --instance` deleted the instance's waiting records too: records routed
    to its domain, lost without a dead letter. Then, leaving them, it said that no records
    were kept for the instance, and next that 1 kept for it "were left in place": one thing,
    in the number's agreement."""
    services, options = loaded
    send(services, a_task("task-1", "call-1"))

    out = run(options, "instances", "purge-unrouted", "--instance", INSTANCE, "--yes")

    assert out == (
        f"No contact records to delete for {INSTANCE}: the 1 kept for it waits for the contact "
        "it continues, whose record has not come, and was left in place; it is applied when it "
        "comes, or dead-lettered after 60 minutes without.\n"
    ), out
    with services.read() as tx:
        assert len(list_unrouted(tx, waiting=True)) == 1

    send(services, a_task("task-2", "call-2"))
    out = run(options, "instances", "purge-unrouted", "--instance", INSTANCE, "--yes")

    assert out == (
        f"No contact records to delete for {INSTANCE}: the 2 kept for it wait for the contact "
        "they continue, whose record has not come, and were left in place; each is applied "
        "when it comes, or dead-lettered after 60 minutes without.\n"
    ), out
    with services.read() as tx:
        assert len(list_unrouted(tx, waiting=True)) == 2


def test_send_kept_says_which_records_now_wait_for_their_contact(
    loaded: tuple[Services, list[str]],
) -> None:
    """A record kept while its instance had no domain, sent on once it has one, that waits for
    the contact it continues: it was counted as "kept again (their domain's key cannot be used
    now)"."""
    services, options = loaded
    send(services, a_task("task-1", "call-1", instance=OTHER_INSTANCE))
    # Associated without the replay, as if the association's process stopped at its commit.
    associate(services, "loaded", OTHER_INSTANCE)

    out = run(options, "instances", "send-kept")

    assert out == (
        "Sent on 0 kept contact records: 0 accepted, 0 rejected; 0 kept again (their domain's "
        f"key cannot be used now).\n1 now {WAITS_ONE}\n"
    ), out


def test_associate_says_how_many_replayed_records_wait_for_their_contact(
    loaded: tuple[Services, list[str]],
) -> None:
    """Associating an instance replays what was kept for it; those of the replayed records that
    wait for the contact they continue are told in the number's agreement (one was said as
    "1 now wait for the contact they continue")."""
    services, options = loaded
    send(services, a_task("task-1", "call-1", instance=OTHER_INSTANCE))
    send(services, a_task("task-2", "call-2", instance=OTHER_INSTANCE))

    out = run(options, "instances", "associate", "--instance", OTHER_INSTANCE, "--domain", "loaded")

    assert out.endswith(f"\n2 of them {WAITS}\n"), out


def test_the_loader_applies_a_task_whose_contact_comes_later_in_the_file(
    loaded: tuple[Services, list[str]], tmp_path: Path
) -> None:
    """The task (its own batch) waited for call-1 (the next batch) until a sweep: the loader
    runs none, so after the load it still waited, up to the server's next."""
    services, options = loaded
    file = tmp_path / "ctr.jsonl"
    records = [a_task("task-1", "call-1"), ctr("call-1", address=CALLER)]
    file.write_text("\n".join(json.dumps(r) for r in records) + "\n")

    out = run(options, "ingest", "contact-records", str(file), "--batch-size", "1", "--json")

    with services.read() as tx:
        assert list_unrouted(tx) == []
    assert found(services, "task-1") == found(services, "call-1") == 1
    summary = json.loads(out)
    assert (summary["Accepted"], summary["Rejected"]) == (1, 1)  # as each record came in
    assert summary["WaitingSentOn"] == {"Count": 1, "Accepted": 1, "Rejected": 0}
