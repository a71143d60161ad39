"""A flow item (file or S3 object) that cannot be read, is not UTF-8, or is neither JSON nor
JSON lines is a failed item: dead-lettered whole with a reason naming it, counted, checkpointed
so that no automatic run fails on it again, and the run goes on with the next items. A source
that cannot be read at all still fails the run, and leaves its items to the next one."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.unit.integrations.integ_helpers import make_domain

from openprofiles.context import Services
from openprofiles.dlq.service import list_messages
from openprofiles.flows.models import FlowRun
from openprofiles.flows.service import run_due_flows, run_flow
from openprofiles.profiles.service import SearchCriterion, search_profiles

from .test_flows_templates import ZENDESK_USER, D, flow_definition, put_flow

TYPE = "Zendesk-users"
EVENT = {"TriggerType": "Event"}


def user(n: int, **more: Any) -> dict[str, Any]:
    return {**ZENDESK_USER, "id": n, "email": f"u{n}@example.com", **more}


def jsonl(*records: dict[str, Any]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def ingested(services: Services, *ids: int) -> list[int]:
    """Which of the Zendesk user ids have a profile."""
    with services.read() as tx:
        return [
            n
            for n in ids
            if search_profiles(
                tx, domain_name=D, criteria=[SearchCriterion("_zendeskUserId", (str(n),))]
            )[0]
        ]


def counts(run: FlowRun) -> tuple[str, int, int, int, int]:
    return (
        run.status,
        run.items_read,
        run.records_read,
        run.records_ingested,
        run.records_dead_lettered,
    )


def letters(services: Services) -> list[Any]:
    with services.read() as tx:
        return list_messages(tx, domain_name=D)


def test_a_file_not_utf8_is_dead_lettered_and_the_event_flow_goes_on(
    services: Services, tmp_path: Path
) -> None:
    make_domain(services, D)
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "a.jsonl").write_text(jsonl(user(1)))
    (folder / "b.jsonl").write_bytes(jsonl(user(2, name="Zoë")).encode("latin-1"))
    (folder / "c.jsonl").write_text(jsonl(user(3)))
    put_flow(services, "crm", TYPE, flow_definition("crm", "file://", str(folder), trigger=EVENT))
    now = datetime.now(UTC)

    [run] = run_due_flows(services, now=now)
    assert counts(run) == ("COMPLETED", 3, 3, 2, 1) and run.error is None
    assert ingested(services, 1, 2, 3) == [1, 3]
    [letter] = letters(services)
    assert (letter.object_type_name, letter.category) == (TYPE, "invalid_value")
    assert f"Flow crm, b.jsonl: The file {folder / 'b.jsonl'} is not UTF-8 text" in letter.reason
    assert "0xEB" in letter.reason and "(line 1)" in letter.reason
    # The byte that is not UTF-8 is kept as an escape, the rest as it was.
    assert '"name": "Zo\\xeb"' in letter.object_json

    # The failed file is checkpointed: the next ticks have nothing to run.
    assert run_due_flows(services, now=now + timedelta(minutes=1)) == []
    # Once the file changes it is read again.
    (folder / "b.jsonl").write_text(jsonl(user(2, name="Zoë")))
    [run] = run_due_flows(services, now=now + timedelta(minutes=2))
    assert counts(run) == ("COMPLETED", 1, 1, 1, 0)
    assert ingested(services, 1, 2, 3) == [1, 2, 3]


def test_a_failed_item_is_not_read_again_by_scheduled_complete_runs(
    services: Services, tmp_path: Path
) -> None:
    make_domain(services, D)
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "a.jsonl").write_text(jsonl(user(1)))
    (folder / "b.jsonl").write_bytes(b'{"id": 2, "name": "\xff"}\n')
    schedule = {"ScheduleExpression": "rate(1 hours)", "DataPullMode": "Complete"}
    trigger = {"TriggerType": "Scheduled", "TriggerProperties": {"Scheduled": schedule}}
    put_flow(services, "crm", TYPE, flow_definition("crm", "file://", str(folder), trigger=trigger))
    now = datetime.now(UTC)
    [run] = run_due_flows(services, now=now)
    assert counts(run) == ("COMPLETED", 2, 2, 1, 1)
    # The next scheduled run reads every item again, except the one that failed unchanged:
    # the dead-letter queue already holds it.
    [run] = run_due_flows(services, now=now + timedelta(hours=2))
    assert counts(run) == ("COMPLETED", 1, 1, 1, 0)
    assert len(letters(services)) == 1
    # A run asked for reads it again (the cause may have been fixed without changing it).
    # Failing again, it counts another attempt on its letter rather than a second letter.
    run = run_flow(services, domain_name=D, flow_name="crm")
    assert counts(run) == ("COMPLETED", 2, 2, 1, 1)
    [letter] = letters(services)
    assert letter.attempts == 2


def test_a_broken_json_document_is_one_failed_item(services: Services, tmp_path: Path) -> None:
    make_domain(services, D)
    folder = tmp_path / "export"
    folder.mkdir()
    # A pretty-printed array with one missing comma (line 4).
    broken = json.dumps([user(1), user(2)], indent=2).replace('"id": 1,', '"id": 1', 1)
    (folder / "a.json").write_text(broken)
    # JSON lines with one bad line: only that line fails.
    (folder / "b.jsonl").write_text(jsonl(user(3)) + '{"id": 4, "email":\n' + jsonl(user(5)))
    # A pretty-printed single record is one record, not one per line.
    (folder / "c.json").write_text(json.dumps(user(6), indent=2))
    # A UTF-8 byte order mark is no part of the text.
    (folder / "d.jsonl").write_bytes(b"\xef\xbb\xbf" + jsonl(user(7)).encode())
    put_flow(services, "crm", TYPE, flow_definition("crm", "file://", str(folder)))
    run = run_flow(services, domain_name=D, flow_name="crm")
    assert counts(run) == ("COMPLETED", 4, 6, 4, 2)
    assert ingested(services, 1, 2, 3, 4, 5, 6, 7) == [3, 5, 6, 7]
    whole, line = letters(services)
    assert whole.reason.startswith(
        f"Flow crm, a.json: The file {folder / 'a.json'} is neither JSON nor JSON lines: "
        "Expecting ',' delimiter at line 4 column 5."
    )
    assert whole.object_json == broken
    assert "could not be parsed as JSON" in line.reason and line.object_json == '{"id": 4, "email":'


def test_a_file_that_cannot_be_opened_during_the_run_fails_alone(
    services: Services, tmp_path: Path
) -> None:
    make_domain(services, D)
    folder = tmp_path / "export"
    folder.mkdir()
    for n in (1, 2, 3):
        (folder / f"{n}.jsonl").write_text(jsonl(user(n)))
    put_flow(services, "crm", TYPE, flow_definition("crm", "file://", str(folder), trigger=EVENT))

    def replace_second(run: FlowRun) -> None:
        # Listed as a file, a folder by the time it is read: it cannot be opened.
        if run.items_read == 1:
            (folder / "2.jsonl").unlink()
            (folder / "2.jsonl").mkdir()

    run = run_flow(services, domain_name=D, flow_name="crm", on_progress=replace_second)
    assert counts(run) == ("COMPLETED", 3, 3, 2, 1)
    [letter] = letters(services)
    assert f"The file {folder / '2.jsonl'} cannot be read: Is a directory" in letter.reason


def test_the_folder_gone_during_the_run_fails_it(services: Services, tmp_path: Path) -> None:
    make_domain(services, D)
    folder, away = tmp_path / "export", tmp_path / "away"
    folder.mkdir()
    for n in (1, 2):
        (folder / f"{n}.jsonl").write_text(jsonl(user(n)))
    put_flow(services, "crm", TYPE, flow_definition("crm", "file://", str(folder), trigger=EVENT))

    def unmount(run: FlowRun) -> None:
        shutil.move(folder, away)

    run = run_flow(services, domain_name=D, flow_name="crm", on_progress=unmount)
    assert (run.status, run.items_read) == ("FAILED", 1)
    assert f"The folder {folder} does not exist" in (run.error or "")
    assert letters(services) == []
    # Back again: the file the failed run did not read is read by the next one.
    shutil.move(away, folder)
    [run] = run_due_flows(services, now=datetime.now(UTC))
    assert counts(run) == ("COMPLETED", 1, 1, 1, 0)
    assert ingested(services, 1, 2) == [1, 2]


def test_s3_objects_that_fail_and_a_bucket_that_is_missing(
    services: Services, moto_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    s3 = boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1")
    bucket = f"failed-{services.settings.data_dir.parent.name[-20:].lower().replace('_', '-')}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="x/a.jsonl", Body=jsonl(user(1)).encode())
    s3.put_object(Bucket=bucket, Key="x/b.jsonl", Body=jsonl(user(2, name="Zoë")).encode("cp1252"))
    s3.put_object(Bucket=bucket, Key="x/c.json", Body=b'[{"id": 3}, {"id": 4]')
    s3.put_object(Bucket=bucket, Key="x/d.jsonl", Body=jsonl(user(5)).encode())
    services.settings = replace(services.settings, s3_endpoint_url=moto_url)
    make_domain(services, D)
    put_flow(services, "s3", TYPE, flow_definition("s3", bucket, "x/", trigger=EVENT))
    put_flow(services, "gone", TYPE, flow_definition("gone", f"{bucket}-gone", trigger=EVENT))
    now = datetime.now(UTC)

    # The missing bucket's Event flow records its failed start (test_flows_event_source_fails).
    failed, run = run_due_flows(services, now=now)
    assert run.flow_name == "s3" and counts(run) == ("COMPLETED", 4, 4, 2, 2)
    assert failed.flow_name == "gone" and failed.status == "FAILED"
    assert "NoSuchBucket" in (failed.error or "")
    assert ingested(services, 1, 2, 5) == [1, 5]
    b, c = letters(services)
    assert f"The object s3://{bucket}/x/b.jsonl is not UTF-8 text" in b.reason
    assert f"The object s3://{bucket}/x/c.json is neither JSON nor JSON lines" in c.reason
    assert "line 1 column 21" in c.reason
    assert run_due_flows(services, now=now + timedelta(minutes=1)) == []

    # A bucket that does not exist fails the run as a whole, saying so.
    run = run_flow(services, domain_name=D, flow_name="gone")
    assert run.status == "FAILED" and "NoSuchBucket" in (run.error or "")
    assert run.items_read == 0


def test_a_run_whose_domain_key_is_disabled_midway_ends_failed_with_the_reason(
    settings: Any, tmp_path: Path
) -> None:
    """It used to stay RUNNING forever, the error escaping the run (an audit)."""
    from openprofiles.app import build_services
    from openprofiles.crypto.keyring import Keyring

    services = build_services(replace(settings, data_key_cache_seconds=0))
    try:
        keyring = Keyring(settings.keyring_path)
        key = keyring.create_key("tenant")
        make_domain(services, D, key.arn(settings.region, settings.account_id))
        folder = tmp_path / "export"
        folder.mkdir()
        (folder / "a.jsonl").write_text(jsonl(user(1)))
        (folder / "b.jsonl").write_text(jsonl(user(2)))
        put_flow(services, "crm", TYPE, flow_definition("crm", "file://", str(folder)))

        run = run_flow(
            services,
            domain_name=D,
            flow_name="crm",
            on_progress=lambda _: keyring.disable(key.key_id),
        )

        assert run.status == "FAILED" and run.error is not None and "disabled" in run.error
        keyring.enable(key.key_id)
        # The item the failure stopped at was not checkpointed: the next run reads it.
        again = run_flow(services, domain_name=D, flow_name="crm")
        assert again.status == "COMPLETED"
        assert ingested(services, 1, 2) == [1, 2]
    finally:
        services.database.dispose()


def cli_storage(services: Services) -> list[str]:
    given = ["--data-dir", str(services.settings.data_dir)]
    if services.settings.database_url:
        given += ["--database-url", services.settings.database_url]
    return [*given, "--domain", D]


def test_dlq_retry_leaves_a_failed_item_alone_and_says_what_to_do(
    services: Services, tmp_path: Path
) -> None:
    """It used to try the file's text as one object, fail, and replace the reason (naming the
    file) with a JSON parse error."""
    from click.testing import CliRunner

    from openprofiles.cli import main

    make_domain(services, D)
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "a.json").write_text('[{"id": 1}, {"id": 2]')
    put_flow(services, "crm", TYPE, flow_definition("crm", "file://", str(folder)))
    run_flow(services, domain_name=D, flow_name="crm")
    [letter] = letters(services)
    runner = CliRunner()

    retried = runner.invoke(main, ["dlq", "retry", *cli_storage(services), "--json"])
    assert retried.exit_code == 0, retried.output
    why = (
        f"This dead letter holds the file {folder / 'a.json'}, not a record (flow crm): a retry "
        f"cannot ingest it. Fix the source and run the flow on demand (openprofiles flows run "
        f"crm --domain {D}), which reads it again; then purge this dead letter."
    )
    assert json.loads(retried.output) == {
        "Succeeded": [],
        "Superseded": [],
        "Failed": [letter.message_id],
        "NotRetried": {letter.message_id: why},
    }
    [kept] = letters(services)
    assert (kept.reason, kept.attempts, kept.object_json) == (letter.reason, 1, letter.object_json)
    said = runner.invoke(main, ["dlq", "retry", *cli_storage(services)])
    assert said.output == (
        f"0 ingested, 1 still failing.\n1 of them cannot be retried from here:\n"
        f"  {letter.message_id}: {why}\n"
    )
    shown = runner.invoke(
        main, ["dlq", "show", *cli_storage(services), letter.message_id, "--json"]
    )
    assert json.loads(shown.output)["NotRetryable"] == why


def test_dlq_retry_of_flow_records_keeps_the_flows_tasks(
    services: Services, tmp_path: Path
) -> None:
    """A record the pipeline rejected is dead-lettered as the flow's Map tasks made it, so that a
    retry ingests what the flow would have (it used to hold the source record, which a retry
    ingested unmapped); one that failed a Validate task is not retried past it."""
    from openprofiles.dlq.service import retry
    from openprofiles.object_types.service import put_object_type

    make_domain(services, D)

    def lead_type(allow: bool) -> None:
        fields = {
            "id": {"Source": "_source.LeadId"},
            "email": {
                "Source": "_source.Email",
                "Target": "_profile.EmailAddress",
                "ContentType": "EMAIL_ADDRESS",
            },
        }
        keys = {"leadId": [{"StandardIdentifiers": ["PROFILE", "UNIQUE"], "FieldNames": ["id"]}]}
        with services.write() as tx:
            put_object_type(
                tx,
                domain_name=D,
                name="Lead",
                params={
                    "Description": "leads",
                    "AllowProfileCreation": allow,
                    "Fields": fields,
                    "Keys": keys,
                },
            )

    lead_type(allow=False)
    folder = tmp_path / "crm"
    folder.mkdir()
    (folder / "a.jsonl").write_text(
        jsonl({"cid": "1", "mail": "a@example.com"}, {"cid": "2", "mail": ""})
    )
    tasks = [
        {
            "TaskType": "Validate",
            "SourceFields": ["mail"],
            "ConnectorOperator": {"S3": "VALIDATE_NON_NULL"},
        },
        *(
            {
                "TaskType": "Map",
                "SourceFields": [source],
                "DestinationField": target,
                "ConnectorOperator": {"S3": "NO_OP"},
            }
            for source, target in (("cid", "LeadId"), ("mail", "Email"))
        ),
    ]
    put_flow(services, "crm", "Lead", flow_definition("crm", "file://", str(folder), tasks=tasks))
    run = run_flow(services, domain_name=D, flow_name="crm")
    assert counts(run) == ("COMPLETED", 1, 2, 0, 2)
    rejected, invalid = letters(services)
    assert json.loads(rejected.object_json) == {"LeadId": "1", "Email": "a@example.com"}
    assert rejected.category == "no_profile" and rejected.not_retryable is None
    assert "VALIDATE_NON_NULL failed" in invalid.reason and invalid.not_retryable is not None

    lead_type(allow=True)
    with services.write() as tx:
        outcome = retry(tx, domain_name=D)
    assert (outcome.succeeded, outcome.failed) == ([rejected.message_id], [invalid.message_id])
    assert list(outcome.not_retried) == [invalid.message_id]
    with services.read() as tx:
        found, _ = search_profiles(tx, domain_name=D, criteria=[SearchCriterion("leadId", ("1",))])
    assert [record.fields["EmailAddress"] for record, _ in found] == ["a@example.com"]


# A lost race needs PostgreSQL's concurrency (SQLite has one writer).
@pytest.mark.parametrize("settings", ["postgres"], indirect=True)
def test_a_batch_that_lost_a_race_is_applied_again(services: Services, tmp_path: Path) -> None:
    """PostgreSQL: a deadlock with a server's writes used to escape the run and leave it
    RUNNING for ever; the batch's transaction runs again, and counts once."""
    from tests.support.lost_races import attempts, deadlock_once_on

    make_domain(services, D)
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "a.jsonl").write_text(jsonl(user(1), user(2)))
    put_flow(services, "crm", TYPE, flow_definition("crm", "file://", str(folder)))
    deadlock_once_on(services, "profile", "INSERT")

    run = run_flow(services, domain_name=D, flow_name="crm")

    assert counts(run) == ("COMPLETED", 1, 2, 2, 0)
    assert ingested(services, 1, 2) == [1, 2] and attempts(services) > 1


def test_a_run_stopped_by_an_internal_error_ends_failed(services: Services, tmp_path: Path) -> None:
    """An error with no reason for the user (here the database refusing every profile) still
    ends the run FAILED, not RUNNING for ever; the error goes on to the caller's log."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    from openprofiles.flows.runs import get_run

    make_domain(services, D)
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "a.jsonl").write_text(jsonl(user(1)))
    put_flow(services, "crm", TYPE, flow_definition("crm", "file://", str(folder)))
    with services.write() as tx:
        if services.database.is_sqlite:
            tx.conn.execute(
                text(
                    "CREATE TRIGGER refuse BEFORE INSERT ON profile "
                    "BEGIN SELECT RAISE(ABORT, 'refused'); END"
                )
            )
        else:
            tx.conn.execute(
                text(
                    "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                    "RAISE EXCEPTION 'refused' USING ERRCODE = 'XX000'; END $$"
                )
            )
            tx.conn.execute(
                text(
                    "CREATE TRIGGER refuse BEFORE INSERT ON profile "
                    "FOR EACH ROW EXECUTE FUNCTION refuse()"
                )
            )
    with pytest.raises(DBAPIError):
        run_flow(services, domain_name=D, flow_name="crm")

    with services.read() as tx:
        [run_id] = tx.conn.execute(text("SELECT run_id FROM flow_run")).scalars().all()
        run = get_run(tx, domain_name=D, run_id=run_id)
    assert run.status == "FAILED" and run.error == "An internal error stopped the run."


def test_a_failed_items_letter_and_checkpoint_run_again_after_a_lost_race(
    services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runs of one flow reading a failing item at once both dead-letter it; the second's
    insert meets the first's on the letter's repeat digest. That transaction was not run
    again (store.conflicts), so the run ended FAILED, "An internal error stopped the run"."""
    from openprofiles.flows import runner as flow_runner
    from openprofiles.store.conflicts import ConcurrentChange

    make_domain(services, D)
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "b.jsonl").write_bytes(b'{"id": 2, "name": "\xff"}\n')
    put_flow(services, "crm", TYPE, flow_definition("crm", "file://", str(folder)))
    real = flow_runner.store_checkpoint
    lost: list[bool] = []

    def loses_once(*args: Any, **kwargs: Any) -> None:
        if not lost:
            lost.append(True)
            raise ConcurrentChange()
        real(*args, **kwargs)

    monkeypatch.setattr(flow_runner, "store_checkpoint", loses_once)
    run = run_flow(services, domain_name=D, flow_name="crm")
    assert lost and run.status == "COMPLETED"
    [letter] = letters(services)
    assert letter.attempts == 1 and letter.origin == "Flow crm, b.jsonl"
