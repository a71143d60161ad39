"""`openprofiles ingest contact-records FILE` with bad input, on SQLite and PostgreSQL: a record
with a wrong-typed field, an update that cannot be ordered (no LastUpdateTimestamp) or a
ContactId padded with white space is rejected and the rest of the file is loaded; a file that is
neither JSON nor JSON lines is refused whole, with nothing loaded; a domain that cannot take
records stops the load with its reason and how far it got."""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from tests.support.contact_loader import D, found, loaded_data_dir
from tests.unit.integrations.integ_helpers import OTHER_INSTANCE, associate, ctr, make_domain

from openprofiles.cli import main
from openprofiles.contacts.kept import list_unrouted
from openprofiles.context import Services
from openprofiles.crypto.keyring import Keyring
from openprofiles.dlq.service import list_messages
from openprofiles.ingest.bulk import MAX_LINE_BYTES
from openprofiles.settings import Settings


@pytest.fixture
def loaded(settings: Settings) -> Iterator[tuple[Services, list[str]]]:
    with loaded_data_dir(settings) as made:
        yield made


def test_wrong_typed_record_is_rejected_and_the_rest_loaded(
    loaded: tuple[Services, list[str]], tmp_path: Path
) -> None:
    services, options = loaded
    records = [ctr(f"file-{i}", address=f"+1206555010{i}") for i in range(6)]
    records[3]["Channel"] = ["VOICE"]
    records[4]["CustomerEndpoint"] = {"Address": "+999", "Type": "TELEPHONE_NUMBER"}
    file = tmp_path / "records.jsonl"
    file.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    result = CliRunner().invoke(
        main,
        ["ingest", "contact-records", *options, str(file), "--batch-size", "2", "--json"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert (summary["Read"], summary["Accepted"], summary["Rejected"]) == (6, 4, 2)
    assert [found(services, f"file-{i}") for i in range(6)] == [1, 1, 1, 0, 0, 1]
    with services.read() as tx:
        letters = list_messages(tx, domain_name=D)
    assert sorted(json.loads(m.object_json)["ContactId"] for m in letters) == ["file-3", "file-4"]


def test_updates_that_cannot_be_ordered_are_counted_as_rejected(
    loaded: tuple[Services, list[str]], tmp_path: Path
) -> None:
    """The loader shares the intake: an update of a loaded contact without LastUpdateTimestamp
    was counted as accepted while changing nothing (an audit)."""
    services, options = loaded
    first = ctr("f-1", agent="first")
    unstamped = ctr("f-1", agent="unstamped")
    del unstamped["LastUpdateTimestamp"]
    file = tmp_path / "records.jsonl"
    file.write_text("\n".join(json.dumps(r) for r in [first, unstamped, first, ctr("f-2 ")]) + "\n")
    result = CliRunner().invoke(
        main,
        ["ingest", "contact-records", *options, str(file), "--batch-size", "1", "--json"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert (summary["Read"], summary["Accepted"], summary["Rejected"]) == (4, 2, 2)
    with services.read() as tx:
        letters = list_messages(tx, domain_name=D)
    reasons = {json.loads(m.object_json)["ContactId"]: m.reason for m in letters}
    assert "has no LastUpdateTimestamp" in reasons["f-1"]
    assert "white space" in reasons["f-2 "]


def test_a_domain_that_cannot_take_records_stops_the_load_with_its_reason(
    loaded: tuple[Services, list[str]], settings: Settings, tmp_path: Path
) -> None:
    """A domain whose key is disabled used to end the load in a traceback (an audit)."""
    services, options = loaded
    keyring = Keyring(settings.keyring_path)
    key = keyring.create_key("tenant")
    make_domain(services, "keyed", key.arn(settings.region, settings.account_id))
    associate(services, "keyed", OTHER_INSTANCE)
    keyring.disable(key.key_id)
    file = tmp_path / "records.jsonl"
    records = [ctr("s-1"), ctr("s-2", instance=OTHER_INSTANCE), ctr("s-3")]
    file.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    result = CliRunner().invoke(
        main, ["ingest", "contact-records", *options, str(file), "--batch-size", "1"]
    )
    assert result.exit_code == 1
    assert "is disabled" in result.output and "Traceback" not in result.output
    assert "Stopped after 1 of 3 records (1 accepted, 0 rejected)" in result.output
    assert [found(services, c) for c in ("s-1", "s-3")] == [1, 0]


def test_malformed_file_is_refused_whole(
    loaded: tuple[Services, list[str]], tmp_path: Path
) -> None:
    services, options = loaded
    pretty = json.dumps([ctr("p1"), ctr("p2")], indent=2)[:-2] + ",\n]"
    file = tmp_path / "records.json"
    file.write_text(pretty)
    result = CliRunner().invoke(main, ["ingest", "contact-records", *options, str(file)])
    assert result.exit_code == 1
    assert "is neither a JSON contact record, a JSON array of records nor JSON lines" in (
        result.output
    )
    assert f"line {pretty.count(chr(10)) + 1} column 1" in result.output
    assert "Nothing was loaded" in result.output and "Traceback" not in result.output
    assert found(services, "p1") == 0
    with services.read() as tx:
        assert list_unrouted(tx) == []
        assert list_messages(tx, domain_name=D) == []
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(json.dumps(ctr("café"), ensure_ascii=False).encode("latin-1"))
    result = CliRunner().invoke(main, ["ingest", "contact-records", *options, str(latin)])
    assert result.exit_code == 1 and "is not UTF-8 text" in result.output


def test_dead_letters_name_their_file_and_line_or_array_index(
    loaded: tuple[Services, list[str]], tmp_path: Path
) -> None:
    """A letter of a loaded file did not say which file, nor where in it, its record was."""
    services, options = loaded
    records = [ctr(f"o-{i}") for i in range(3)]
    records[1]["Channel"] = ["VOICE"]
    folder = tmp_path / "exports"
    folder.mkdir()
    lines = folder / "records.jsonl"
    # Blank lines count, as an editor counts them: the bad record is on line 4.
    lines.write_text("\n" + json.dumps(records[0]) + "\n\n" + json.dumps(records[1]) + "\n")
    array = folder / "records.json"
    array.write_text(json.dumps(records, indent=2))
    for file in (lines, array):
        result = CliRunner().invoke(
            main, ["ingest", "contact-records", *options, str(file), "--batch-size", "1"]
        )
        assert result.exit_code == 0, result.output
    with services.read() as tx:
        letters = list_messages(tx, domain_name=D)
    assert [x.origin for x in letters] == [
        "File records.jsonl, line 4",
        "File records.json, array index 1",
    ]
    assert all(x.reason.startswith(f"{x.origin}: Channel") for x in letters)

    listed = CliRunner().invoke(main, ["dlq", "list", *options, "--domain", D, "--json"])
    assert [x["Origin"] for x in json.loads(listed.output)] == [x.origin for x in letters]


def test_a_byte_order_mark_is_not_part_of_the_first_record(
    loaded: tuple[Services, list[str]], tmp_path: Path
) -> None:
    """The first record of a file with a BOM (as Windows tools write it) was rejected as not
    JSON, and kept as unrouted."""
    services, options = loaded
    file = tmp_path / "records.jsonl"
    text = "\n".join(json.dumps(ctr(f"b-{i}")) for i in range(2)) + "\n"
    file.write_bytes(codecs.BOM_UTF8 + text.encode())
    result = CliRunner().invoke(main, ["ingest", "contact-records", *options, str(file), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["Accepted"] == 2
    assert [found(services, f"b-{i}") for i in range(2)] == [1, 1]
    with services.read() as tx:
        assert list_unrouted(tx) == []


def test_an_empty_file_says_so(loaded: tuple[Services, list[str]], tmp_path: Path) -> None:
    _, options = loaded
    file = tmp_path / "empty.jsonl"
    file.write_text("\n")
    result = CliRunner().invoke(main, ["ingest", "contact-records", *options, str(file)])
    assert result.exit_code == 0
    assert result.output.endswith(f"{file} holds no contact records: nothing was loaded.\n")


def test_a_record_kept_for_its_instance_keeps_its_place_through_the_replay(
    loaded: tuple[Services, list[str]], tmp_path: Path
) -> None:
    """A record of an instance with no domain is kept until the instance is associated; when
    the replay then dead-lettered it, its letter no longer said which file and line."""
    services, options = loaded
    records = [ctr(f"k-{i}", instance=OTHER_INSTANCE) for i in range(2)]
    records[1]["Channel"] = ["VOICE"]
    file = tmp_path / "later.jsonl"
    file.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    result = CliRunner().invoke(main, ["ingest", "contact-records", *options, str(file)])
    assert result.exit_code == 0, result.output
    with services.read() as tx:
        kept = list_unrouted(tx)
    assert sorted(k.origin or "" for k in kept) == [
        "File later.jsonl, line 1",
        "File later.jsonl, line 2",
    ]
    waiting = CliRunner().invoke(main, ["instances", "unrouted", *options])
    assert waiting.output == f"{OTHER_INSTANCE}  2\n"
    associated = CliRunner().invoke(
        main, ["instances", "associate", *options, "--instance", OTHER_INSTANCE, "--domain", D]
    )
    assert associated.exit_code == 0, associated.output
    assert found(services, "k-0") == 1
    with services.read() as tx:
        [letter] = list_messages(tx, domain_name=D)
        assert list_unrouted(tx) == []
    assert letter.origin == "File later.jsonl, line 2"
    waiting = CliRunner().invoke(main, ["instances", "unrouted", *options])
    assert waiting.output == "No contact records are waiting for an instance association.\n"
    assert letter.reason.startswith("File later.jsonl, line 2: Channel")


def test_kept_records_can_be_purged_by_instance_or_without_one(
    loaded: tuple[Services, list[str]], tmp_path: Path
) -> None:
    """Records kept for an instance no one will associate, or without any instance ARN, were
    kept for ever: personal data with no way to remove it."""
    services, options = loaded
    anonymous = ctr("n-0")
    del anonymous["InstanceARN"]
    records = [ctr(f"p-{i}", instance=OTHER_INSTANCE) for i in range(2)] + [anonymous]
    file = tmp_path / "stray.jsonl"
    file.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    assert (
        CliRunner().invoke(main, ["ingest", "contact-records", *options, str(file)]).exit_code == 0
    )
    purge = ["instances", "purge-unrouted", *options]

    refused = CliRunner().invoke(main, purge)
    assert refused.exit_code == 2 and "--instance ARN, --without-instance or --matching" in (
        refused.output
    )
    done = CliRunner().invoke(main, [*purge, "--without-instance", "--yes"])
    assert done.output == "Deleted 1 contact record kept without an instance.\n"
    with services.read() as tx:
        assert sorted(k.instance_arn or "" for k in list_unrouted(tx)) == [OTHER_INSTANCE] * 2
    done = CliRunner().invoke(main, [*purge, "--instance", OTHER_INSTANCE, "--yes"])
    assert done.output == f"Deleted 2 contact records kept for {OTHER_INSTANCE}.\n"
    with services.read() as tx:
        assert list_unrouted(tx) == []


def test_a_file_loaded_twice_keeps_each_rejected_record_once(
    loaded: tuple[Services, list[str]], tmp_path: Path
) -> None:
    """A re-run (after a crash, say) used to keep a second copy of every record no domain took
    and write a second letter for every rejected one."""
    services, options = loaded
    wrong = ctr("w-0")
    wrong["Channel"] = ["VOICE"]
    records = [ctr("w-1"), wrong, ctr("w-2", instance=OTHER_INSTANCE)]
    file = tmp_path / "twice.jsonl"
    file.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    for _ in range(2):
        result = CliRunner().invoke(main, ["ingest", "contact-records", *options, str(file)])
        assert result.exit_code == 0, result.output
    with services.read() as tx:
        [letter] = list_messages(tx, domain_name=D)
        kept = list_unrouted(tx)
    assert (letter.origin, letter.attempts) == ("File twice.jsonl, line 2", 2)
    assert [k.origin for k in kept] == ["File twice.jsonl, line 3"]
    assert found(services, "w-1") == 1


def test_lines_too_long_to_read_are_each_kept_with_their_line(
    loaded: tuple[Services, list[str]], tmp_path: Path
) -> None:
    """Kept records are told apart by their text and where they came from: lines too long to
    read are all kept with empty text, and were folded into one, losing the others' lines."""
    services, options = loaded
    long_line = json.dumps(ctr("l-0", notes="x" * MAX_LINE_BYTES))
    file = tmp_path / "long.jsonl"
    # A first line that is a record on its own: the file is read a line at a time.
    file.write_text(f"{json.dumps(ctr('l-1'))}\n{long_line}\n{long_line}\n")
    for _ in range(2):
        result = CliRunner().invoke(main, ["ingest", "contact-records", *options, str(file)])
        assert result.exit_code == 0, result.output
    with services.read() as tx:
        kept = list_unrouted(tx)
    assert sorted((k.origin, k.object_json) for k in kept) == [
        ("File long.jsonl, line 2", ""),
        ("File long.jsonl, line 3", ""),
    ]
    assert found(services, "l-1") == 1
