"""`openprofiles dlq purge --all` and `openprofiles instances purge-unrouted --instance ARN |
--without-instance` ask before deleting, saying how many records would go; --yes does not ask,
and without it a command whose standard input is not a terminal (a script) is refused. They
delete what they counted: a record that arrives while the question waits stays.

An operator review: both deleted every dead letter of a domain (records never ingested) or
every contact record kept for an instance at once, with no question, where `users delete`,
which deletes one web user, asks. Both backends, a real data dir and database; the questions
at a terminal are asked of the command run in a pseudo-terminal."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from tests.support.contact_loader import D, loaded_data_dir
from tests.unit.integrations.integ_helpers import OTHER_INSTANCE, ctr, send

from openprofiles.cli import main
from openprofiles.contacts.kept import count_unrouted, list_unrouted
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


def _answered_after(
    args: list[str], meanwhile: Callable[[], None], answer: str = "y\n"
) -> subprocess.CompletedProcess[str]:
    """As `_at_terminal`, but `answer` is typed only once the question is on stderr, and
    `meanwhile` has run: what a server writes while the operator reads the question."""
    terminal, its_end = os.openpty()
    try:
        process = subprocess.Popen(
            [OPENPROFILES, *args], stdin=its_end, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        os.close(its_end)
        assert process.stderr is not None
        asked = _read_until(process.stderr.fileno(), b"[y/N]")
        meanwhile()
        os.write(terminal, answer.encode())
        out, err = process.communicate(timeout=120)
    finally:
        os.close(terminal)
    return subprocess.CompletedProcess(
        process.args, process.returncode, out.decode(), (asked + err).decode()
    )


def _read_until(fd: int, text: bytes) -> bytes:
    """What is read from `fd` until `text` (or its end, if it never comes: the caller's
    assertions then say what was written instead)."""
    read = b""
    deadline = time.monotonic() + 120
    while text not in read:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"no {text!r} within 120 s; read: {read!r}"
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        read += chunk
    return read


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


def _letter_ids(services: Services) -> list[str]:
    with services.read() as tx:
        return [x.message_id for x in dlq.list_messages(tx, domain_name=D)]


def test_dlq_purge_all_purges_the_letters_counted_not_one_that_came_while_it_asked(
    loaded: tuple[Services, list[str]],
) -> None:
    """A server dead-letters a record while the question waits: the operator agreed to delete
    the 3 counted, not it (a record not ingested yet), so it stays, and the output says so."""
    services, options = loaded
    _letters(services, 3)
    counted = _letter_ids(services)
    arrived: list[str] = []

    def dead_lettered_meanwhile() -> None:
        with services.write() as tx:
            letter = dlq.put(
                tx,
                domain_name=D,
                object_type_name="Crm",
                object_json=json.dumps({"id": "late"}),
                reason="No profile matched.",
                category="no_profile",
            )
        arrived.append(letter.message_id)

    purged = _answered_after(_purge_all(options), dead_lettered_meanwhile)

    assert purged.returncode == 0, purged.stderr
    assert f"Delete 3 dead letters of domain {D}?" in purged.stderr
    # (A blank before: the terminal's prompt, which input() writes to stdout.)
    assert purged.stdout.strip().splitlines() == [
        "Purged 3 dead letters.",
        "1 more dead letter arrived since the count and was kept.",
    ]
    assert _letter_ids(services) == arrived
    assert not set(counted) & set(_letter_ids(services))

    # With --json the JSON stays what a script parses; the note goes to stderr.
    again = _answered_after(_purge_all(options, "--json"), lambda: _letters(services, 2))

    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == {"Purged": 1, "NotFound": []}
    assert "2 more dead letters arrived since the count and were kept." in again.stderr
    assert _letters_left(services) == 2


def test_dlq_purge_all_says_when_a_letter_counted_was_gone_by_the_answer(
    loaded: tuple[Services, list[str]],
) -> None:
    """Purged meanwhile (another operator, a retry): the count the output gives is of the
    letters this run deleted, and the difference is said."""
    services, options = loaded
    _letters(services, 3)
    first = _letter_ids(services)[0]

    def purged_meanwhile() -> None:
        with services.write() as tx:
            dlq.purge(tx, domain_name=D, message_ids=[first])

    purged = _answered_after(_purge_all(options), purged_meanwhile)

    assert purged.returncode == 0, purged.stderr
    assert "Delete 3 dead letters" in purged.stderr
    assert purged.stdout.strip().splitlines() == [
        "Purged 2 dead letters.",
        "1 of the 3 counted was gone already (retried, expired or purged meanwhile).",
    ]
    assert _letters_left(services) == 0


def test_dlq_purge_all_with_message_ids_is_refused_and_purges_nothing(
    loaded: tuple[Services, list[str]],
) -> None:
    """--all beside named ids was ignored: only the named ones went. Either may be what the
    operator meant, so neither is guessed."""
    services, options = loaded
    _letters(services, 2)
    first = _letter_ids(services)[0]

    for args in (_purge_all(options, first), _purge_all(options, first, "--yes")):
        refused = CliRunner().invoke(main, args)

        assert refused.exit_code == 2, refused.output
        assert "MESSAGE_IDS or --all, not both" in refused.stderr
        assert refused.stdout == ""
        assert _letters_left(services) == 2


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


def test_purge_unrouted_deletes_the_records_counted_not_one_kept_while_it_asked(
    loaded: tuple[Services, list[str]],
) -> None:
    """A record of the instance is kept while the question waits: not among the 2 the operator
    agreed to delete, it stays (personal data not applied yet), and the output says so."""
    services, options = loaded
    _kept(services)

    done = _answered_after(
        _purge_unrouted(options, "--instance", OTHER_INSTANCE),
        lambda: send(services, ctr("p-late", instance=OTHER_INSTANCE)),
    )

    assert done.returncode == 0, done.stderr
    assert f"Delete 2 contact records kept for {OTHER_INSTANCE}?" in done.stderr
    assert done.stdout.strip().splitlines() == [
        f"Deleted 2 contact records kept for {OTHER_INSTANCE}.",
        f"1 more arrived for {OTHER_INSTANCE} since the count and was kept.",
    ]
    assert _kept_left(services) == {OTHER_INSTANCE: 1, None: 1}
    with services.read() as tx:
        (left,) = list_unrouted(tx, instance_arn=OTHER_INSTANCE)
    assert json.loads(left.object_json)["ContactId"] == "p-late"
