"""Erasing a customer's records that no profile links to, by the customer's value: dead letters
(`openprofiles dlq purge --matching`) and kept contact records (`openprofiles instances
purge-unrouted --matching`). DeleteProfile cannot find them (their record failed, or no domain
has taken it yet), and a kept record replayed by `instances associate` brought the erased
customer back. An email compares ignoring case, a phone number in E.164 form
(openprofiles.normalize), any other value exactly; --dry-run lists ids and deletes nothing, and
the value is never printed (both backends, a real data dir and database)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from tests.support.contact_loader import D, found, loaded_data_dir
from tests.unit.integrations.integ_helpers import OTHER_INSTANCE, ctr, send

from openprofiles import held_values
from openprofiles.cli import main
from openprofiles.contacts.kept import list_unrouted
from openprofiles.context import Services
from openprofiles.dlq.service import list_messages
from openprofiles.dlq.sinks import dead_letter
from openprofiles.settings import Settings


@pytest.fixture
def loaded(settings: Settings) -> Iterator[tuple[Services, list[str]]]:
    with loaded_data_dir(settings) as made:
        yield made


def run(options: list[str], *args: str) -> str:
    result = CliRunner().invoke(main, [*args, *options], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def letter(services: Services, object_json: str) -> str:
    return dead_letter(
        services,
        domain_name=D,
        object_type_name="CTR",
        object_json=object_json,
        reason="No profile matched.",
        category="no_profile",
    ).message_id


def letters(services: Services) -> list[str]:
    with services.read() as tx:
        return [x.message_id for x in list_messages(tx, domain_name=D)]


def test_dlq_purge_matching_a_customer(loaded: tuple[Services, list[str]]) -> None:
    services, options = loaded
    base = [*options, "--domain", D]
    by_email = letter(services, json.dumps({"Customer": {"Email": "Ann.Lee@Example.ORG"}}))
    by_phone = letter(services, json.dumps({"Calls": [{"From": "(720) 840-1003"}]}))
    unparsed = letter(services, '{"broken": "ann.lee@example.org", ')
    # An address among a field's words is hers too.
    noted = letter(services, json.dumps({"Note": "write to ann.lee@example.org later"}))
    others = [
        letter(services, json.dumps({"Email": "ann.leek@example.org", "Phone": "+17208401004"})),
        letter(services, json.dumps({"Note": "write to joann.lee@example.org later"})),
        letter(services, json.dumps({"Id": "720 840 1003 7"})),
    ]
    ann = sorted([by_email, by_phone, unparsed, noted])

    email = run(base, "dlq", "purge", "--matching", "ANN.LEE@example.org", "--dry-run", "--json")
    assert json.loads(email) == {
        "Matching": sorted([by_email, unparsed, noted]),
        "Purged": 0,
        "DryRun": True,
    }
    phone = run(base, "dlq", "purge", "--matching", "+1 720-840-1003", "--dry-run")
    assert by_phone in phone and "would purge 1 dead letter" in phone
    assert "720" not in phone.replace(by_phone, "")
    assert sorted(letters(services)) == sorted([*ann, *others])

    assert json.loads(run(base, "dlq", "purge", "--matching", "ann.lee@example.org", "--json")) == {
        "Matching": sorted([by_email, unparsed, noted]),
        "Purged": 3,
        "DryRun": False,
    }
    out = run(base, "dlq", "purge", "--matching", "7208401003")
    assert "Purged 1 dead letter holding the value." in out and by_phone in out
    assert "7208401003" not in out
    assert sorted(letters(services)) == sorted(others)

    # Any other value is an exact value of a field.
    note = run(base, "dlq", "purge", "--matching", "write to joann", "--json")
    assert json.loads(note)["Matching"] == []


def test_dlq_purge_matching_is_alone(loaded: tuple[Services, list[str]]) -> None:
    _, options = loaded
    base = [*options, "--domain", D]
    both = CliRunner().invoke(main, ["dlq", "purge", *base, "--all", "--matching", "x"])
    assert both.exit_code == 2 and "not several" in both.output
    dry = CliRunner().invoke(main, ["dlq", "purge", *base, "--all", "--dry-run"])
    assert dry.exit_code == 2 and "--dry-run goes with --matching" in dry.output
    empty = CliRunner().invoke(main, ["dlq", "purge", *base, "--matching", "  "])
    assert empty.exit_code == 2 and "empty" in empty.output


def test_a_purged_kept_record_is_not_replayed(loaded: tuple[Services, list[str]]) -> None:
    """The erased customer's kept contact records no longer come back when their instance is
    associated; another customer's kept records still do."""
    services, options = loaded
    outcome = send(
        services,
        ctr("erased-1", instance=OTHER_INSTANCE, address="+17208401003"),
        ctr("erased-2", instance=OTHER_INSTANCE, channel="CHAT", address="Ann.Lee@example.org"),
        ctr("kept-3", instance=OTHER_INSTANCE, address="+17208401004"),
    )
    assert outcome.unrouted == {OTHER_INSTANCE: 3}
    with services.read() as tx:
        ids = {json.loads(r.object_json)["ContactId"]: r.message_id for r in list_unrouted(tx)}

    dry = run(options, "instances", "purge-unrouted", "--matching", "720.840.1003", "--dry-run")
    assert ids["erased-1"] in dry and "would delete 1 kept contact record holding" in dry
    assert "840" not in dry.replace(ids["erased-1"], "")
    by_phone = run(options, "instances", "purge-unrouted", "--matching", "(720) 840-1003", "--json")
    assert json.loads(by_phone) == {
        "Matching": [ids["erased-1"]],
        "Purged": 1,
        "CallerEndpoints": 0,
        "DryRun": False,
    }
    by_email = run(options, "instances", "purge-unrouted", "--matching", "ann.lee@EXAMPLE.org")
    assert "Deleted 1 of 1 kept contact record holding the value." in by_email
    with services.read() as tx:
        assert [r.message_id for r in list_unrouted(tx)] == [ids["kept-3"]]

    run(options, "instances", "associate", "--instance", OTHER_INSTANCE, "--domain", D)
    assert found(services, "erased-1") == 0
    assert found(services, "erased-2") == 0
    assert found(services, "kept-3") == 1


def test_purge_unrouted_matching_is_alone(loaded: tuple[Services, list[str]]) -> None:
    _, options = loaded
    both = CliRunner().invoke(
        main, ["instances", "purge-unrouted", *options, "--without-instance", "--matching", "x"]
    )
    assert both.exit_code == 2 and "--matching VALUE alone" in both.output
    dry = CliRunner().invoke(
        main, ["instances", "purge-unrouted", *options, "--without-instance", "--dry-run"]
    )
    assert dry.exit_code == 2 and "go with --matching" in dry.output


def test_matching_reads_every_page(
    loaded: tuple[Services, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records are opened a page at a time (held_values.ids_holding): those past the first
    pages are found too, and each once."""
    monkeypatch.setattr(held_values, "HOLDING_PAGE", 2)
    services, options = loaded
    ann = "ann.lee@example.org"
    hers = [letter(services, json.dumps({"Email": ann, "n": n})) for n in range(5)]
    for n in range(4):
        letter(services, json.dumps({"Email": "bob@example.org", "n": n}))
    matched = run([*options, "--domain", D], "dlq", "purge", "--matching", ann)
    assert "Purged 5 dead letters" in matched
    assert all(matched.count(message_id) == 1 for message_id in hers)
    assert len(letters(services)) == 4


def test_matching_value_from_standard_input(loaded: tuple[Services, list[str]]) -> None:
    """`--matching -` reads the value from standard input, so it stays out of the shell's
    history and `ps`: the same records go as with the value on the command line."""
    services, options = loaded
    hers = letter(services, json.dumps({"Email": "ann.lee@example.org"}))
    other = letter(services, json.dumps({"Email": "bob@example.org"}))
    piped = CliRunner().invoke(
        main,
        ["dlq", "purge", *options, "--domain", D, "--matching", "-", "--json"],
        input="Ann.Lee@Example.org\n",
    )
    assert piped.exit_code == 0, piped.output
    assert json.loads(piped.output) == {"Matching": [hers], "Purged": 1, "DryRun": False}
    assert letters(services) == [other]

    outcome = send(services, ctr("erased-1", instance=OTHER_INSTANCE, address="+17208401003"))
    assert outcome.unrouted == {OTHER_INSTANCE: 1}
    kept = CliRunner().invoke(
        main,
        ["instances", "purge-unrouted", *options, "--matching", "-", "--json"],
        input="(720) 840-1003\r\n",
    )
    assert kept.exit_code == 0, kept.output
    assert json.loads(kept.output)["Purged"] == 1
    with services.read() as tx:
        assert list_unrouted(tx) == []

    nothing = CliRunner().invoke(
        main, ["dlq", "purge", *options, "--domain", D, "--matching", "-"], input=""
    )
    assert nothing.exit_code == 2 and "standard input gave no value" in nothing.output
    assert letters(services) == [other]
