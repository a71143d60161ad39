"""`openprofiles dlq purge --all` and `openprofiles instances purge-unrouted --instance ARN |
--without-instance` ask before deleting, saying how many records would go; --yes does not ask,
and without it a command whose standard input is not a terminal (a script) is refused.

An operator review: both deleted every dead letter of a domain (records never ingested) or
every contact record kept for an instance at once, with no question, where `users delete`,
which deletes one web user, asks. Both backends, a real data dir and database; the questions
at a terminal are asked of the command run in a pseudo-terminal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from tests.support.contact_loader import D, loaded_data_dir
from tests.unit.integrations.integ_helpers import OTHER_INSTANCE, ctr, send

from openprofiles.cli import main
from openprofiles.contacts.kept import count_unrouted
from openprofiles.context import Services
from openprofiles.dlq import service as dlq
from openprofiles.settings import Settings

OPENPROFILES = str(Path(sys.executable).parent / "openprofiles")


@pytest.fixture
def loaded(settings: Settings) -> Iterator[tuple[Services, list[str]]]:
    with loaded_data_dir(settings) as made:
        yield made


def _letters(services: Services, count: int) -> None:
    with services.write() as tx:
        for n in range(count):
            dlq.put(
                tx,
                domain_name=D,
                object_type_name="Crm",
                object_json=json.dumps({"id": str(n)}),
                reason="No profile matched.",
                category="no_profile",
            )


def _letters_left(services: Services) -> int:
    with services.read() as tx:
        return dlq.count(tx, domain_name=D)


def _kept(services: Services) -> dict[str | None, int]:
    """Kept contact records per instance ARN: two for OTHER_INSTANCE, one without an ARN."""
    anonymous = ctr("n-0")
    del anonymous["InstanceARN"]
    send(services, ctr("p-0", instance=OTHER_INSTANCE), ctr("p-1", instance=OTHER_INSTANCE))
    send(services, anonymous)
    return _kept_left(services)


def _kept_left(services: Services) -> dict[str | None, int]:
    with services.read() as tx:
        return count_unrouted(tx, waiting=False)


def _at_terminal(args: list[str], answer: str) -> subprocess.CompletedProcess[str]:
    """`openprofiles ARGS` with a pseudo-terminal as its standard input, `answer` typed into
    it; stdout and stderr apart."""
    terminal, its_end = os.openpty()
    try:
        process = subprocess.Popen(
            [OPENPROFILES, *args],
            stdin=its_end,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        os.close(its_end)
        # Held by the terminal until the command reads a line (its question's answer).
        os.write(terminal, answer.encode())
        out, err = process.communicate(timeout=120)
    finally:
        os.close(terminal)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def _purge_all(options: list[str], *more: str) -> list[str]:
    return ["dlq", "purge", *options, "--domain", D, "--all", *more]


def test_dlq_purge_all_asks_and_a_no_keeps_every_letter(
    loaded: tuple[Services, list[str]],
) -> None:
    services, options = loaded
    _letters(services, 3)

    kept = _at_terminal(_purge_all(options), "n\n")

    assert kept.returncode == 1, kept.stderr
    assert f"Delete 3 dead letters of domain {D}? They cannot be brought back. [y/N]" in (
        kept.stderr
    )
    assert "Purged" not in kept.stdout
    assert _letters_left(services) == 3


def test_dlq_purge_all_asks_and_a_yes_purges_them_json_on_stdout_alone(
    loaded: tuple[Services, list[str]],
) -> None:
    services, options = loaded
    _letters(services, 3)

    purged = _at_terminal(_purge_all(options, "--json"), "y\n")

    assert purged.returncode == 0, purged.stderr
    assert "Delete 3 dead letters" in purged.stderr
    # The question went to stderr: stdout is still the JSON a script reads.
    assert json.loads(purged.stdout) == {"Purged": 3, "NotFound": []}
    assert _letters_left(services) == 0


def test_dlq_purge_all_with_yes_asks_nothing(loaded: tuple[Services, list[str]]) -> None:
    services, options = loaded
    _letters(services, 2)

    # Even at a terminal; the typed "n" is never read.
    purged = _at_terminal(_purge_all(options, "--yes"), "n\n")

    assert purged.returncode == 0, purged.stderr
    assert "Delete" not in purged.stderr
    assert purged.stdout == "Purged 2 dead letters.\n"
    assert _letters_left(services) == 0


def test_dlq_purge_all_of_nothing_asks_nothing(loaded: tuple[Services, list[str]]) -> None:
    _, options = loaded

    empty = _at_terminal(_purge_all(options), "n\n")

    assert empty.returncode == 0, empty.stderr
    assert "Delete" not in empty.stderr
    assert empty.stdout == f"No dead letters in domain {D}: nothing was purged.\n"


def test_dlq_purge_all_without_a_terminal_needs_yes(loaded: tuple[Services, list[str]]) -> None:
    """A script: not left waiting on a question, and a `y` on its standard input (`yes |`) is
    not taken for one."""
    services, options = loaded
    _letters(services, 2)

    refused = CliRunner().invoke(main, _purge_all(options), input="y\n")

    assert refused.exit_code == 2, refused.output
    assert "add --yes" in " ".join(refused.stderr.split()).lower()
    assert "Nothing was deleted." in " ".join(refused.stderr.split())
    assert refused.stdout == ""
    assert _letters_left(services) == 2
    # Letters the operator named are not asked about: no --yes needed.
    with services.read() as tx:
        first = dlq.list_messages(tx, domain_name=D)[0].message_id
    named = CliRunner().invoke(main, ["dlq", "purge", *options, "--domain", D, first])
    assert named.exit_code == 0, named.output
    assert _letters_left(services) == 1

    done = CliRunner().invoke(main, _purge_all(options, "--yes", "--json"))

    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout) == {"Purged": 1, "NotFound": []}
    assert _letters_left(services) == 0


def _purge_unrouted(options: list[str], *more: str) -> list[str]:
    return ["instances", "purge-unrouted", *options, *more]


def test_purge_unrouted_of_an_instance_asks_and_a_no_keeps_them(
    loaded: tuple[Services, list[str]],
) -> None:
    services, options = loaded
    before = _kept(services)
    assert before == {OTHER_INSTANCE: 2, None: 1}

    kept = _at_terminal(_purge_unrouted(options, "--instance", OTHER_INSTANCE), "n\n")

    assert kept.returncode == 1, kept.stderr
    assert f"Delete 2 contact records kept for {OTHER_INSTANCE}? They cannot be brought " in (
        kept.stderr
    )
    assert _kept_left(services) == before

    anonymous = _at_terminal(_purge_unrouted(options, "--without-instance"), "n\n")

    assert anonymous.returncode == 1, anonymous.stderr
    assert "Delete 1 contact record kept without an instance?" in anonymous.stderr
    assert _kept_left(services) == before


def test_purge_unrouted_asks_and_a_yes_deletes_them(
    loaded: tuple[Services, list[str]],
) -> None:
    services, options = loaded
    _kept(services)

    done = _at_terminal(_purge_unrouted(options, "--instance", OTHER_INSTANCE), "y\n")

    assert done.returncode == 0, done.stderr
    assert "Delete 2 contact records" in done.stderr
    assert done.stdout.strip() == f"Deleted 2 contact records kept for {OTHER_INSTANCE}."
    assert _kept_left(services) == {None: 1}

    again = _at_terminal(_purge_unrouted(options, "--instance", OTHER_INSTANCE), "y\n")

    assert again.returncode == 0, again.stderr
    assert "Delete" not in again.stderr
    assert again.stdout == (
        f"No contact records are kept for {OTHER_INSTANCE}: nothing was deleted.\n"
    )


def test_purge_unrouted_with_yes_asks_nothing(loaded: tuple[Services, list[str]]) -> None:
    services, options = loaded
    _kept(services)

    done = _at_terminal(_purge_unrouted(options, "--without-instance", "--yes"), "n\n")

    assert done.returncode == 0, done.stderr
    assert "Delete" not in done.stderr
    assert done.stdout == "Deleted 1 contact record kept without an instance.\n"
    assert _kept_left(services) == {OTHER_INSTANCE: 2}


def test_purge_unrouted_without_a_terminal_needs_yes(loaded: tuple[Services, list[str]]) -> None:
    services, options = loaded
    before = _kept(services)

    for form in (["--instance", OTHER_INSTANCE], ["--without-instance"]):
        refused = CliRunner().invoke(main, _purge_unrouted(options, *form), input="y\n")
        assert refused.exit_code == 2, refused.output
        assert "add --yes" in " ".join(refused.stderr.split()).lower()
        assert _kept_left(services) == before

    done = CliRunner().invoke(main, _purge_unrouted(options, "--instance", OTHER_INSTANCE, "--yes"))

    assert done.exit_code == 0, done.output
    assert _kept_left(services) == {None: 1}
