"""What a flow's tasks mean (flows.tasks), and the definitions PutIntegration refuses for giving a
task or a schedule no meaning (flows.models) — on SQLite and PostgreSQL where a run is made.

* A Filter compares a value that is no JSON string as its JSON text: VALUE "true" matches a
  JSON true (it compared Python's "True", so no boolean filter ever matched).
* A Filter whose DATA_TYPE is a date type compares instants, read from ISO-8601 text (with its
  offset) or epoch milliseconds on both sides (it compared text, or numbers, and dropped every
  record of a filter whose VALUE was epoch milliseconds).
* A Filter's or a Validate task's operator that means nothing for it (a typo, ADDITION), a
  comparison with nothing to compare with, a VALIDATION_ACTION not AppFlow's are refused when
  the definition is put (a typo passed every record; a Validate task with NO_OP checked nothing).
* A TerminateFlow run's error says where the record is, and that the records before it in its
  batch were not applied (they are read again by the next run).
* A schedule that ends before it starts, or before it is put, and the schedule settings not
  applied (FirstExecutionFrom, ScheduleOffset), are refused.
* A Map task's dotted DestinationField writes nested objects (`_source.Lead.Id` reads it), and a
  projection of a nested path keeps only that path of its parent.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.unit.integrations.integ_helpers import make_domain

from openprofiles.context import Services
from openprofiles.errors import BadRequest
from openprofiles.flows import batches
from openprofiles.flows import service as flows
from openprofiles.flows.models import parse_flow_definition
from openprofiles.flows.tasks import apply_tasks
from openprofiles.object_types.service import put_object_type

from .test_flows_failed_items import TYPE, ingested, jsonl, user
from .test_flows_non_finite_numbers import run_over
from .test_flows_templates import D, find, flow_definition, put_flow


def task(task_type: str, operator: str | None, *fields: str, **properties: str) -> dict[str, Any]:
    found: dict[str, Any] = {"TaskType": task_type, "SourceFields": list(fields)}
    if operator is not None:
        found["ConnectorOperator"] = {"S3": operator}
    if properties:
        found["TaskProperties"] = properties
    return found


def applied(record: dict[str, Any], *tasks: dict[str, Any]) -> dict[str, Any] | None:
    """The record as the tasks, put in a definition, hand it on (None: filtered)."""
    parsed = parse_flow_definition(flow_definition("crm", "b", "", tasks=list(tasks))).tasks
    return apply_tasks(parsed, record)


# --- booleans and other JSON values compared as text


@pytest.mark.parametrize(
    ("operator", "value", "field", "kept"),
    [
        ("EQUAL_TO", "true", True, True),
        ("EQUAL_TO", "true", False, False),
        ("EQUAL_TO", "false", False, True),
        ("NOT_EQUAL_TO", "true", False, True),
        ("NOT_EQUAL_TO", "true", True, False),
        ("CONTAINS", "tru", True, True),
        # A JSON null in a list, or an object, is its JSON text too.
        ("CONTAINS", "null", [None], True),
    ],
)
def test_a_json_value_is_compared_as_its_json_text(
    operator: str, value: str, field: Any, kept: bool
) -> None:
    for data_type in ({}, {"DATA_TYPE": "boolean"}):
        filtering = task("Filter", operator, "active", VALUE=value, **data_type)
        assert (applied({"active": field}, filtering) is not None) is kept


def test_a_run_keeps_the_records_a_boolean_filter_keeps(services: Services, tmp_path: Path) -> None:
    active = task("Filter", "EQUAL_TO", "active", VALUE="true", DATA_TYPE="boolean")
    records = [user(1, active=True), user(2, active=False), user(3, active="true"), user(4)]

    run = run_over(services, tmp_path, [active], *records)

    assert (run.status, run.records_ingested, run.records_filtered) == ("COMPLETED", 2, 2)
    assert ingested(services, 1, 2, 3, 4) == [1, 3]


# --- dates compared as instants

MODIFIED = "2023-05-01T10:00:00.000+0000"


@pytest.mark.parametrize(
    ("operator", "properties", "field", "kept"),
    [
        # Epoch milliseconds against ISO-8601 text, either way round.
        ("GREATER_THAN", {"VALUE": "1609459200000"}, MODIFIED, True),
        ("LESS_THAN", {"VALUE": "1609459200000"}, MODIFIED, False),
        ("GREATER_THAN", {"VALUE": "2021-01-01T00:00:00Z"}, 1682935200000, True),
        ("EQUAL_TO", {"VALUE": "2023-05-01T10:00:00Z"}, 1682935200000, True),
        # Offsets are read: 11:00+02:00 is 09:00 UTC, before 10:00 UTC (as text it sorted after).
        ("GREATER_THAN", {"VALUE": "2023-05-01T11:00:00+02:00"}, MODIFIED, True),
        ("EQUAL_TO", {"VALUE": "2023-05-01T12:00:00+02:00"}, MODIFIED, True),
        # A date alone is its midnight, UTC.
        ("LESS_THAN", {"VALUE": "2023-05-02"}, MODIFIED, True),
        (
            "BETWEEN",
            {"LOWER_BOUND": "2023-05-01T09:00:00Z", "UPPER_BOUND": "1682938800000"},
            MODIFIED,
            True,
        ),
        # A field that is no instant does not pass, whatever the operator.
        ("NOT_EQUAL_TO", {"VALUE": "2021-01-01"}, "yesterday", False),
        ("GREATER_THAN", {"VALUE": "2021-01-01"}, True, False),
        ("LESS_THAN", {"VALUE": "2021-01-01"}, "", False),
    ],
)
@pytest.mark.parametrize("data_type", ["datetime", "date", "timestamp", "DateTime"])
def test_a_date_filter_compares_instants(
    operator: str, properties: dict[str, str], field: Any, kept: bool, data_type: str
) -> None:
    filtering = task("Filter", operator, "modified", DATA_TYPE=data_type, **properties)
    assert (applied({"modified": field}, filtering) is not None) is kept


def test_a_date_filter_whose_value_is_no_date_is_refused() -> None:
    """It would drop every record, each counted as filtered, and say nothing."""
    filtering = task("Filter", "GREATER_THAN", "modified", VALUE="last week", DATA_TYPE="date")
    with pytest.raises(BadRequest, match="compares dates .* its VALUE is no date"):
        applied({"modified": MODIFIED}, filtering)


# --- tasks that mean nothing, refused when put


@pytest.mark.parametrize(
    ("refused", "says"),
    [
        (task("Filter", "LESS_THEN", "n", VALUE="5"), "operator LESS_THEN, which is no filter"),
        (task("Filter", "ADDITION", "n", VALUE="5"), "operator ADDITION, which is no filter"),
        (task("Filter", "VALIDATE_NON_NULL", "n"), "VALIDATE_NON_NULL, which is no filter"),
        (task("Filter", None, "n"), "Filter task on n has the operator None"),
        (task("Filter", "EQUAL_TO", "n"), "operator EQUAL_TO needs TaskProperties VALUE"),
        (task("Filter", "CONTAINS", "n"), "operator CONTAINS needs TaskProperties VALUE"),
        (
            task("Filter", "BETWEEN", "n", LOWER_BOUND="1"),
            "operator BETWEEN needs TaskProperties UPPER_BOUND",
        ),
        (task("Filter", "EQUAL_TO", VALUE="5"), "Filter task EQUAL_TO needs the SourceFields"),
        (task("Filter", "PROJECTION"), "Filter task PROJECTION needs the SourceFields"),
        (task("Validate", None, "n"), "Validate task on n has the operator None"),
        (task("Validate", "NO_OP", "n"), "operator NO_OP, which is no validation operator"),
        (task("Validate", "EQUAL_TO", "n"), "EQUAL_TO, which is no validation operator"),
        (
            task("Validate", "VALIDATE_NON_NULL", "n", VALIDATION_ACTION="Ignore"),
            "VALIDATION_ACTION Ignore; use DropRecord",
        ),
    ],
)
def test_a_task_that_means_nothing_is_refused_when_put(
    services: Services, refused: dict[str, Any], says: str
) -> None:
    make_domain(services, D)
    with pytest.raises(BadRequest, match=says):
        put_flow(services, "crm", TYPE, flow_definition("crm", "b", tasks=[refused]))


@pytest.mark.parametrize(
    "accepted",
    [
        task("Filter", "PROJECTION", "n"),
        task("Filter", "NO_OP", "n"),
        task("Filter", "BETWEEN", "n", LOWER_BOUND="1", UPPER_BOUND="9"),
        # CONTAINS is Salesforce's operator: a definition written for one is served.
        {**task("Filter", None, "n", VALUE="x"), "ConnectorOperator": {"Salesforce": "CONTAINS"}},
        task("Validate", "VALIDATE_NUMERIC", "n"),
        task("Validate", "VALIDATE_NON_NULL", "n", VALIDATION_ACTION="DropRecord"),
        task("Validate", "VALIDATE_NON_ZERO", "n", VALIDATION_ACTION="TerminateFlow"),
    ],
)
def test_the_tasks_aws_takes_are_taken(accepted: dict[str, Any]) -> None:
    definition = flow_definition("crm", "b", tasks=[accepted])
    assert len(parse_flow_definition(definition).tasks) == 1


def test_a_stored_definition_with_a_task_that_means_nothing_is_still_read() -> None:
    """The watcher reads it (`stored`), and its run's own reading refuses it, saying why."""
    definition = flow_definition("crm", "b", tasks=[task("Filter", "LESS_THEN", "n", VALUE="5")])
    assert len(parse_flow_definition(definition, stored=True).tasks) == 1


# --- TerminateFlow


def test_a_terminating_record_is_named_with_the_records_of_its_batch_not_applied(
    services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batches, "BATCH_SIZE", 2)
    validate = task("Validate", "VALIDATE_NON_NEGATIVE", "score", VALIDATION_ACTION="TerminateFlow")
    records = [user(n, score="-1" if n == 4 else "1") for n in range(1, 6)]

    run = run_over(services, tmp_path, [validate], *records)

    # Batches [1, 2], [3, 4], [5]: the first is applied; the second is rolled back with 3.
    assert run.status == "FAILED"
    assert run.error == (
        "Flow crm, a.jsonl, line 4: Validate task VALIDATE_NON_NEGATIVE failed: field score is "
        "negative or not a number. The flow was terminated (TerminateFlow). The record before "
        "it in its batch (from line 3) was not applied either: the flow's next run reads it "
        "again."
    )
    assert ingested(services, 1, 2, 3, 4, 5) == [1, 2]
    # The counts are the applied batches'.
    assert (run.records_read, run.records_ingested) == (2, 2)

    # Fixed, the item is read again: record 3 is not lost.
    records[3] = user(4, score="1")
    (tmp_path / "export" / "a.jsonl").write_text(jsonl(*records))
    again = flows.run_flow(services, domain_name=D, flow_name="crm")
    assert again.status == "COMPLETED"
    assert ingested(services, 1, 2, 3, 4, 5) == [1, 2, 3, 4, 5]


# --- schedules

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def scheduled(**settings: Any) -> dict[str, Any]:
    schedule = {"ScheduleExpression": "rate(1 hours)", **settings}
    trigger = {"TriggerType": "Scheduled", "TriggerProperties": {"Scheduled": schedule}}
    return flow_definition("crm", "b", trigger=trigger)


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        (
            {"ScheduleStartTime": NOW + timedelta(days=2), "ScheduleEndTime": NOW + timedelta(1)},
            "is not after ScheduleStartTime",
        ),
        (
            {"ScheduleStartTime": NOW + timedelta(1), "ScheduleEndTime": NOW + timedelta(1)},
            "is not after ScheduleStartTime",
        ),
        ({"ScheduleEndTime": NOW - timedelta(seconds=1)}, "is in the past"),
        ({"FirstExecutionFrom": NOW}, "FirstExecutionFrom is not supported"),
        ({"ScheduleOffset": 300}, "ScheduleOffset is not supported"),
    ],
)
def test_a_schedule_that_cannot_be_served_is_refused_when_put(
    settings: dict[str, Any], says: str
) -> None:
    with pytest.raises(BadRequest, match=says):
        parse_flow_definition(scheduled(**settings), put_at=NOW)


def test_a_schedule_is_refused_by_put_integration(services: Services) -> None:
    make_domain(services, D)
    with pytest.raises(BadRequest, match="FirstExecutionFrom is not supported"):
        put_flow(services, "crm", TYPE, scheduled(FirstExecutionFrom=NOW))
    ended = datetime.now(UTC) - timedelta(minutes=1)
    with pytest.raises(BadRequest, match="is in the past"):
        put_flow(services, "crm", TYPE, scheduled(ScheduleEndTime=ended))


def test_a_schedule_that_can_be_served_is_taken() -> None:
    flow = parse_flow_definition(
        scheduled(
            ScheduleStartTime=NOW,
            ScheduleEndTime=NOW + timedelta(days=1),
            ScheduleOffset=0,
            Timezone="America/New_York",
        ),
        put_at=NOW,
    )
    assert (flow.schedule_start, flow.schedule_end) == (NOW, NOW + timedelta(days=1))
    # Read by a run after its end (on demand): not refused.
    ended = scheduled(ScheduleEndTime=NOW - timedelta(days=1))
    assert parse_flow_definition(ended).schedule_end == NOW - timedelta(days=1)


# --- nested paths


def test_a_map_task_writes_a_dotted_destination_nested(services: Services, tmp_path: Path) -> None:
    make_domain(services, D)
    with services.write() as tx:
        put_object_type(
            tx,
            domain_name=D,
            name="Lead",
            params={
                "Description": "leads",
                "AllowProfileCreation": True,
                "Fields": {
                    "id": {"Source": "_source.Lead.Id"},
                    "email": {"Source": "_source.Lead.Email", "Target": "_profile.EmailAddress"},
                },
                "Keys": {
                    "leadId": [{"StandardIdentifiers": ["PROFILE", "UNIQUE"], "FieldNames": ["id"]}]
                },
            },
        )
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "a.jsonl").write_text(jsonl({"cid": "7", "mail": "lead7@example.com"}))
    maps = [
        {**task("Map", "NO_OP", "cid"), "DestinationField": "Lead.Id"},
        {**task("Map", "NO_OP", "mail"), "DestinationField": "Lead.Email"},
    ]
    put_flow(services, "crm", "Lead", flow_definition("crm", "file://", str(folder), tasks=maps))

    run = flows.run_flow(services, domain_name=D, flow_name="crm")

    assert (run.status, run.records_ingested) == ("COMPLETED", 1)
    fields, _ = find(services, "leadId", "7")
    assert fields["EmailAddress"] == "lead7@example.com"


def test_map_tasks_writing_inside_each_other_are_refused() -> None:
    # "x-a" sorts between "x" and "x.y": not only neighbours are compared.
    maps = [
        {**task("Map", "NO_OP", source), "DestinationField": destination}
        for source, destination in (("a", "x"), ("b", "x-a"), ("c", "x.y.z"))
    ]
    with pytest.raises(BadRequest, match="DestinationField x and x.y.z"):
        parse_flow_definition(flow_definition("crm", "b", tasks=maps))


@pytest.mark.parametrize(
    ("fields", "kept"),
    [
        (["addr.city", "id"], {"addr": {"city": "X"}, "id": 1}),
        (["addr.geo.lat"], {"addr": {"geo": {"lat": 1.5}}}),
        (["addr", "addr.city"], {"addr": {"city": "X", "street": "S", "geo": {"lat": 1.5}}}),
        # A list has no fields to name; a key with a dot in its name is kept as get_path reads it.
        (["tags.name", "a.b"], {"a.b": 2}),
    ],
)
def test_a_projection_of_a_nested_path_keeps_only_that_path(
    fields: list[str], kept: dict[str, Any]
) -> None:
    record = {
        "id": 1,
        "addr": {"city": "X", "street": "S", "geo": {"lat": 1.5}},
        "tags": [{"name": "t"}],
        "a.b": 2,
    }
    assert applied(record, task("Filter", "PROJECTION", *fields)) == kept
