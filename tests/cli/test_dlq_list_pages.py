"""`openprofiles dlq list` a page at a time, and `dlq purge` counting in words that agree.

An operator review: `dlq list` printed all 10,110 dead letters of a bulk load, with no way to
see fewer; `dlq purge` said "Purged 1 dead letters"."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from click.testing import CliRunner, Result
from tests.unit.ingest.conftest import DOMAIN, make_domain

from openprofiles.cli import main
from openprofiles.cli_support import storage_options_given
from openprofiles.context import Services
from openprofiles.dlq import service


def _letters(services: Services, count: int) -> list[str]:
    """`count` dead letters of DOMAIN, oldest first: their message ids."""
    with services.write() as tx:
        for n in range(count):
            service.put(
                tx,
                domain_name=DOMAIN,
                object_type_name="Crm",
                object_json=json.dumps({"id": str(n)}),
                reason="No profile matched.",
                category="no_profile",
            )
    with services.read() as tx:
        return [x.message_id for x in service.list_messages(tx, domain_name=DOMAIN)]


def _storage(services: Services) -> list[str]:
    storage = ["--data-dir", str(services.settings.data_dir)]
    if services.settings.database_url:
        storage += ["--database-url", services.settings.database_url]
    return storage


def _dlq(services: Services, *args: str) -> Result:
    return CliRunner().invoke(main, ["dlq", *args, *_storage(services), "--domain", DOMAIN])


def test_list_shows_a_page_and_says_how_to_see_the_rest(services: Services) -> None:
    make_domain(services)
    ids = _letters(services, 103)

    first = _dlq(services, "list")
    assert first.exit_code == 0, first.output
    lines = first.output.splitlines()
    assert [line.split()[0] for line in lines[:-1]] == ids[:100]
    # The next page's command as it must be typed: with the data dir and database this one was
    # given (a newcomer review: the hint left them out, and read the default .data).
    next_page = f"openprofiles dlq list {shlex.join(_storage(services))} --domain {DOMAIN} " + (
        f"--after {ids[99]}"
    )
    assert lines[-1] == (
        f"100 dead letters shown of 103 in domain {DOMAIN}; 3 more follow. Next page: "
        f"{next_page}; every one: --all."
    )

    rest = CliRunner().invoke(main, shlex.split(next_page)[1:])
    assert rest.exit_code == 0, rest.output
    assert [line.split()[0] for line in rest.output.splitlines()] == ids[100:]

    every = _dlq(services, "list", "--all")
    assert [line.split()[0] for line in every.output.splitlines()] == ids


def test_list_limit_pages_the_json_alike_saying_what_follows_on_stderr(
    services: Services,
) -> None:
    make_domain(services)
    ids = _letters(services, 5)

    page = _dlq(services, "list", "--json", "--limit", "2")
    assert page.exit_code == 0, page.output
    assert [x["MessageId"] for x in json.loads(page.stdout)] == ids[:2]
    assert f"2 dead letters shown of 5 in domain {DOMAIN}; 3 more follow." in page.stderr
    assert f"--after {ids[1]}" in page.stderr

    middle = _dlq(services, "list", "--json", "--limit", "2", "--after", ids[1])
    assert [x["MessageId"] for x in json.loads(middle.stdout)] == ids[2:4]
    assert "more follow" in middle.stderr
    last = _dlq(services, "list", "--json", "--limit", "2", "--after", ids[3])
    assert [x["MessageId"] for x in json.loads(last.stdout)] == ids[4:]
    assert last.stderr == ""

    whole = _dlq(services, "list", "--json", "--all")
    assert [x["MessageId"] for x in json.loads(whole.stdout)] == ids


def test_the_next_page_hint_names_no_password_and_quotes_paths() -> None:
    assert storage_options_given(None, None) == ""
    assert storage_options_given(Path("my data"), None) == " --data-dir 'my data'"
    assert storage_options_given(None, "postgresql://ops:hunter2@db.internal/profiles") == (
        " --database-url 'postgresql://ops:***@db.internal/profiles'"
    )


def test_purge_counts_one_dead_letter_in_the_singular(services: Services) -> None:
    make_domain(services)
    ids = _letters(services, 3)

    one = _dlq(services, "purge", ids[0])
    assert one.exit_code == 0, one.output
    assert one.output == "Purged 1 dead letter.\n"
    two = _dlq(services, "purge", "--all", "--yes")
    assert two.output == "Purged 2 dead letters.\n"
