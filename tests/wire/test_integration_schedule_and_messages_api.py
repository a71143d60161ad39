"""PutIntegration through a real boto3 client against a live server (both backends): the
ScheduleExpression spellings of the model's and AppFlow's examples ("rate (5 minutes)",
"rate(5minutes)") are served and stored as sent, an interval beyond ten years is refused naming
the limit (it overflowed the watcher's next-run time on every pass), a task's ConnectorOperator
with several members none of them the source's (S3) is refused, and refusing an instance another
domain holds names no openprofiles command to the API caller."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from openprofiles.flows.models import schedule_interval
from openprofiles.integrations.service import find_integration

KMS = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"


@pytest.fixture
def domain(live_server: Any) -> str:
    name = f"d-{uuid.uuid4().hex[:10]}"
    live_server.client().create_domain(DomainName=name, DefaultExpirationDays=30)
    return name


def _flow(live_server: Any, name: str, expression: str) -> dict[str, Any]:
    folder = live_server.settings.data_dir / "flows" / name
    return {
        "FlowName": name,
        "KmsArn": KMS,
        "SourceFlowConfig": {
            "ConnectorType": "S3",
            "SourceConnectorProperties": {
                "S3": {"BucketName": "file://", "BucketPrefix": str(folder)}
            },
        },
        "Tasks": [],
        "TriggerConfig": {
            "TriggerType": "Scheduled",
            "TriggerProperties": {"Scheduled": {"ScheduleExpression": expression}},
        },
    }


@pytest.mark.parametrize(
    ("expression", "seconds"),
    [
        ("rate (5 minutes)", 300),  # the customer-profiles model's example
        ("rate(5minutes)", 300),  # AppFlow's example
        ("rate(1 minute)", 60),
        ("rate(1 minutes)", 60),
        ("rate( 2 hour )", 7200),
        ("rate(3 Days)", 259200),
    ],
)
def test_schedule_expression_spellings(
    live_server: Any, domain: str, expression: str, seconds: int
) -> None:
    client = live_server.client()
    name = f"f-{uuid.uuid4().hex[:8]}"
    put = client.put_integration(
        DomainName=domain,
        ObjectTypeName="Zendesk-users",
        FlowDefinition=_flow(live_server, name, expression),
    )
    assert schedule_interval(expression) == seconds
    with live_server.services.read() as tx:
        stored = find_integration(tx, domain_name=domain, uri=put["Uri"])
    assert stored is not None
    scheduled = stored.settings["FlowDefinition"]["TriggerConfig"]["TriggerProperties"]
    assert scheduled["Scheduled"]["ScheduleExpression"] == expression


@pytest.mark.parametrize("expression", ["rate(0 minutes)", "rate(5 weeks)", "cron(0 * * * ? *)"])
def test_schedule_expressions_not_served(live_server: Any, domain: str, expression: str) -> None:
    with pytest.raises(ClientError) as exc:
        live_server.client().put_integration(
            DomainName=domain,
            ObjectTypeName="Zendesk-users",
            FlowDefinition=_flow(live_server, f"f-{uuid.uuid4().hex[:8]}", expression),
        )
    assert exc.value.response["Error"]["Code"] == "BadRequestException"
    assert expression in exc.value.response["Error"]["Message"]


@pytest.mark.parametrize(
    "expression", ["rate(3651 days)", "rate(3000000 days)", f"rate({'9' * 200} days)"]
)
def test_schedule_intervals_beyond_the_limit(
    live_server: Any, domain: str, expression: str
) -> None:
    with pytest.raises(ClientError) as exc:
        live_server.client().put_integration(
            DomainName=domain,
            ObjectTypeName="Zendesk-users",
            FlowDefinition=_flow(live_server, f"f-{uuid.uuid4().hex[:8]}", expression),
        )
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert exc.value.response["Error"]["Code"] == "BadRequestException"
    assert "longer than 3650 days" in exc.value.response["Error"]["Message"]


def test_connector_operators_none_of_the_source(live_server: Any, domain: str) -> None:
    client = live_server.client()
    definition = _flow(live_server, f"f-{uuid.uuid4().hex[:8]}", "rate(1 day)")
    task = {"TaskType": "Validate", "SourceFields": ["tier"]}
    definition["Tasks"] = [
        {**task, "ConnectorOperator": {"Marketo": "NO_OP", "Zendesk": "VALIDATE_NON_NULL"}}
    ]
    with pytest.raises(ClientError) as exc:
        client.put_integration(
            DomainName=domain, ObjectTypeName="Zendesk-users", FlowDefinition=definition
        )
    assert exc.value.response["Error"]["Code"] == "BadRequestException"
    assert "but not S3" in exc.value.response["Error"]["Message"]
    # With the source's member among them, it is the one that applies: accepted.
    definition["Tasks"] = [
        {**task, "ConnectorOperator": {"Marketo": "NO_OP", "S3": "VALIDATE_NON_NULL"}}
    ]
    client.put_integration(
        DomainName=domain, ObjectTypeName="Zendesk-users", FlowDefinition=definition
    )


def test_instance_taken_names_no_server_command(live_server: Any, domain: str) -> None:
    client = live_server.client()
    other = f"d-{uuid.uuid4().hex[:10]}"
    client.create_domain(DomainName=other, DefaultExpirationDays=30)
    instance = f"arn:aws:connect:us-east-1:111122223333:instance/{uuid.uuid4()}"
    client.put_integration(DomainName=domain, Uri=instance)
    with pytest.raises(ClientError) as exc:
        client.put_integration(DomainName=other, Uri=instance)
    assert exc.value.response["Error"]["Code"] == "BadRequestException"
    message = exc.value.response["Error"]["Message"]
    assert domain in message and "DeleteIntegration" in message
    assert "openprofiles" not in message
