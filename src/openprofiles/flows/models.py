"""Records of the flows package and the reading of a FlowDefinition.

The API's SourceConnectorType enum is fixed (Salesforce, Marketo, Zendesk, Servicenow, S3), so
OpenProfiles serves two kinds of source, both declared as `ConnectorType: "S3"`:

* an S3 bucket (any S3-compatible endpoint, `settings.s3_endpoint_url`): `BucketName` and an
  optional `BucketPrefix`;
* a local folder of JSON-lines files: `BucketName` starting with `file://`; the folder is the
  path after `file://`, joined with `BucketPrefix` when one is given (so a long path can go in
  BucketPrefix, whose model limit is 512 characters instead of BucketName's 63). Example:
  `{"BucketName": "file://", "BucketPrefix": "/srv/exports/crm"}`. The folder must lie under
  one of `settings.flow_folder_roots` (flows.sources checks it).

The SaaS connector types cannot be reached from a self-hosted server: export their records to a
bucket or a folder (the built-in templates read those exports) and declare an S3 source.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from openprofiles.errors import BadRequest
from openprofiles.flows.tasks import check_task

FOLDER_PREFIX = "file://"
SUPPORTED_TASKS = frozenset({"Map", "Filter", "Validate"})
# The model's own example is "rate (5 minutes)" (customer-profiles ScheduledTriggerProperties),
# AppFlow's is "rate(5minutes)": so spaces are optional around the parenthesis and between the
# number and the unit, and a unit is singular or plural whatever the number (EventBridge, whose
# syntax AppFlow borrows, wants "1 minute" but "5 minutes"; a caller following either example
# is served). The expression is stored and echoed as sent; only the interval is read from it.
_RATE = re.compile(
    # [0-9], not \\d: \\d takes any script's digits ("٠", Arabic-Indic zero, which the check
    # of N >= 1 by its digits did not see as a zero).
    r"^rate\s*\(\s*([0-9]+)\s*(minute|minutes|hour|hours|day|days)\s*\)$",
    re.IGNORECASE,
)
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
# The longest interval a rate(...) may ask for. EventBridge documents a rate's value only as "a
# positive number" and AppFlow no bound at all, so this is OpenProfiles' own: a flow run less
# often than once in ten years is no schedule, and a run's next time, its start plus the
# interval, must stay a date (datetime ends in year 9999: rate(3000000 days) made every watcher
# pass fail with OverflowError). PutIntegration refuses more (`schedule_interval`).
MAX_INTERVAL_DAYS = 3650
MAX_INTERVAL_SECONDS = MAX_INTERVAL_DAYS * _UNIT_SECONDS["day"]


@dataclass(frozen=True)
class Task:
    task_type: str
    source_fields: tuple[str, ...]
    operator: str | None
    destination_field: str | None
    properties: Mapping[str, str]


@dataclass(frozen=True)
class Flow:
    name: str
    description: str
    # "s3" or "folder"
    source_kind: str
    bucket: str | None
    prefix: str
    folder: str | None
    trigger_type: str
    interval_seconds: int | None
    # Incremental (only new or changed items) or Complete (everything each run).
    pull_mode: str
    schedule_start: datetime | None
    schedule_end: datetime | None
    tasks: tuple[Task, ...]


@dataclass(frozen=True)
class FlowRun:
    domain_name: str
    run_id: str
    flow_name: str
    trigger: str
    status: str
    items_read: int
    records_read: int
    records_ingested: int
    records_filtered: int
    records_dead_lettered: int
    error: str | None
    started_at: datetime
    finished_at: datetime | None


def schedule_interval(expression: str, *, stored: bool = False) -> int:
    """Seconds between runs of `rate(N unit)`; BadRequest for anything else, and for an
    interval longer than MAX_INTERVAL_DAYS. `stored`: an expression read back from the store,
    which PutIntegration may have accepted before that limit: its interval is cut to the limit
    instead (the watcher's trigger computes its next run from it), not refused on every pass."""
    match = _RATE.match(expression.strip())
    # Told by its digits: int() refuses a string of thousands of them with ValueError.
    digits = match.group(1).lstrip("0") if match is not None else ""
    if not digits:
        raise BadRequest(
            f"ScheduleExpression {expression!r} is not supported; use rate(N minutes), "
            "rate(N hours) or rate(N days) with N >= 1."
        )
    assert match is not None
    unit = match.group(2).lower().rstrip("s")
    # Ten digits of minutes are past the limit already: the count is not made an int beyond.
    seconds = int(digits) * _UNIT_SECONDS[unit] if len(digits) <= 10 else None
    if seconds is not None and seconds <= MAX_INTERVAL_SECONDS:
        return seconds
    if stored:
        return MAX_INTERVAL_SECONDS
    raise BadRequest(
        f"ScheduleExpression {expression[:64]!r} asks for an interval longer than "
        f"{MAX_INTERVAL_DAYS} days (10 years), the longest a flow's schedule may have; use "
        f"at most rate({MAX_INTERVAL_DAYS} days)."
    )


def parse_flow_definition(
    definition: Mapping[str, Any], *, stored: bool = False, put_at: datetime | None = None
) -> Flow:
    """The flow a FlowDefinition describes; BadRequest naming what cannot be served.
    `stored`: a definition read back from the store, not one being put (`schedule_interval`).
    `put_at`: when PutIntegration puts it, which its ScheduleEndTime must follow; not given
    when a run reads the definition (claims.load_flow), which a schedule ended since must
    not refuse (a run on demand, or a scheduled run that began before the end)."""
    name = definition["FlowName"]
    source = definition["SourceFlowConfig"]
    connector = source["ConnectorType"]
    if connector != "S3":
        raise BadRequest(
            f"SourceFlowConfig.ConnectorType {connector} cannot be reached from OpenProfiles; "
            "export the records to an S3 bucket or a local folder and use ConnectorType S3 "
            "(BucketName file:///path for a folder)."
        )
    s3 = source.get("SourceConnectorProperties", {}).get("S3")
    if not s3:
        raise BadRequest(
            "SourceFlowConfig.SourceConnectorProperties.S3 is required for ConnectorType S3."
        )
    bucket = s3["BucketName"]
    prefix = s3.get("BucketPrefix") or ""
    folder: str | None = None
    if bucket.startswith(FOLDER_PREFIX):
        base = bucket[len(FOLDER_PREFIX) :]
        folder = "/".join(p for p in (base.rstrip("/"), prefix) if p) if base else prefix
        if not folder.startswith("/"):
            raise BadRequest(
                "A folder source needs an absolute path: BucketName file:///path, or "
                "BucketName file:// with BucketPrefix /path."
            )
    trigger = definition["TriggerConfig"]
    trigger_type = trigger["TriggerType"]
    interval: int | None = None
    pull_mode = "Incremental"
    start = end = None
    if trigger_type == "Scheduled":
        scheduled = (trigger.get("TriggerProperties") or {}).get("Scheduled")
        if not scheduled:
            raise BadRequest(
                "TriggerConfig.TriggerProperties.Scheduled is required for TriggerType Scheduled."
            )
        interval = schedule_interval(scheduled["ScheduleExpression"], stored=stored)
        pull_mode = scheduled.get("DataPullMode") or "Incremental"
        start = _as_datetime(scheduled.get("ScheduleStartTime"))
        end = _as_datetime(scheduled.get("ScheduleEndTime"))
        if not stored:
            _check_schedule(scheduled, start, end, put_at)
    elif trigger_type == "OnDemand":
        pull_mode = "Complete"
    tasks = tuple(_task(t, connector, stored=stored) for t in definition.get("Tasks") or ())
    if not stored:
        _check_destinations(tasks)
    return Flow(
        name=name,
        description=definition.get("Description") or "",
        source_kind="folder" if folder is not None else "s3",
        bucket=None if folder is not None else bucket,
        prefix="" if folder is not None else prefix,
        folder=folder,
        trigger_type=trigger_type,
        interval_seconds=interval,
        pull_mode=pull_mode,
        schedule_start=start,
        schedule_end=end,
        tasks=tasks,
    )


def _check_schedule(
    scheduled: Mapping[str, Any],
    start: datetime | None,
    end: datetime | None,
    put_at: datetime | None,
) -> None:
    """BadRequest for schedule settings a flow cannot be run by: an end not after its start,
    or past when it is put (the flow would never run, and nothing said so), and the settings
    OpenProfiles does not apply, refused rather than ignored. FirstExecutionFrom: an S3
    source's listing carries no modification times (flows.sources), so which items it leaves
    out cannot be told. ScheduleOffset (seconds added to each run's time): a run starts when
    its interval has passed since the previous one (flows.triggers), so a ScheduleStartTime
    that much later does what an offset would. Timezone is taken and changes nothing: a
    rate(...) interval and the schedule's times (instants) are the same in any zone."""
    if start is not None and end is not None and end <= start:
        raise BadRequest(
            f"ScheduleEndTime {end.isoformat()} is not after ScheduleStartTime "
            f"{start.isoformat()}: the flow would never run."
        )
    if end is not None and put_at is not None and end <= put_at:
        raise BadRequest(
            f"ScheduleEndTime {end.isoformat()} is in the past: the flow would never run."
        )
    if scheduled.get("FirstExecutionFrom") is not None:
        raise BadRequest(
            "FirstExecutionFrom is not supported by OpenProfiles flows: the first run reads "
            "every item of the source (DataPullMode Incremental reads only new or changed "
            "items after it). Leave it out, or move older items out of the source's "
            "folder or prefix."
        )
    if scheduled.get("ScheduleOffset"):
        raise BadRequest(
            "ScheduleOffset is not supported by OpenProfiles flows: set ScheduleStartTime "
            "that much later instead (runs follow the rate(...) interval from the first)."
        )


def _check_destinations(tasks: Sequence[Task]) -> None:
    """BadRequest when a Map task writes inside the value another writes (`x` and `x.y`):
    one would overwrite the other (flows.tasks writes a dotted DestinationField nested)."""
    written = {str(t.destination_field) for t in tasks if t.task_type == "Map"}
    for inner in sorted(written):
        parts = inner.split(".")
        for outer in (".".join(parts[:n]) for n in range(1, len(parts))):
            if outer in written:
                raise BadRequest(
                    f"Map tasks write both DestinationField {outer} and {inner}, inside it; "
                    "map to one or the other."
                )


def _as_datetime(value: Any) -> datetime | None:
    """Schedule times arrive as datetimes from the wire and are stored as epoch seconds."""
    if isinstance(value, datetime):
        # An instant with no zone is read as UTC, as the wire's epoch seconds are.
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if value is None:
        return value
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    raise BadRequest("Schedule times must be timestamps.")


def _task(task: Mapping[str, Any], connector: str, *, stored: bool) -> Task:
    task_type = task["TaskType"]
    if task_type not in SUPPORTED_TASKS:
        raise BadRequest(
            f"Task type {task_type} is not supported by OpenProfiles flows; "
            f"use {', '.join(sorted(SUPPORTED_TASKS))}."
        )
    operators: Mapping[str, str] = task.get("ConnectorOperator") or {}
    parsed = Task(
        task_type=task_type,
        source_fields=_task_fields(task, task_type),
        operator=_operator(operators, connector, stored=stored),
        destination_field=task.get("DestinationField"),
        properties=dict(task.get("TaskProperties") or {}),
    )
    if not stored:
        # A stored definition put before these checks runs as it did; the run's own reading
        # (claims.load_flow) refuses it, saying why.
        check_task(parsed)
    return parsed


def _operator(operators: Mapping[str, str], connector: str, *, stored: bool) -> str | None:
    """The task's operator for the flow's source `connector` (always S3 here: a bucket or a
    folder). ConnectorOperator is a structure with one member per connector type (the service
    model does not make it a union), each "the operation to be performed on the provided
    <connector> source fields": the source's member is the one that applies, whatever else is
    set. One member alone, of another connector (a definition written for a Zendesk source
    whose records are now exported to a bucket), is the task's operator, as it always was.
    Several, none of them the source's: which one was meant cannot be told, and taking the
    first in the JSON's order could skip a Validate task silently: refused. `stored`: a
    definition PutIntegration took before that was refused keeps the operator it ran with (the
    first), rather than its flow no longer running at all."""
    if connector in operators:
        return operators[connector]
    if len(operators) > 1 and not stored:
        raise BadRequest(
            f"A task's ConnectorOperator sets {', '.join(sorted(operators))} but not "
            f"{connector}, the flow's source connector type: set the operator as "
            f'{{"{connector}": "..."}}.'
        )
    return next(iter(operators.values()), None)


def _task_fields(task: Mapping[str, Any], task_type: str) -> tuple[str, ...]:
    """The task's SourceFields, BadRequest when its type needs others."""
    fields: Sequence[str] = task.get("SourceFields") or ()
    if task_type == "Map" and (len(fields) != 1 or not task.get("DestinationField")):
        raise BadRequest("A Map task needs exactly one SourceField and a DestinationField.")
    if task_type == "Validate" and not fields:
        raise BadRequest("A Validate task needs the SourceFields it validates.")
    return tuple(fields)
