"""Every model operation, end to end: boto3 request -> dispatcher -> boto3 response.

For each operation a minimal valid input (the required members) is serialized and signed by a
real boto3 client; the dispatcher must route it back to the same operation, verify its
signature, parse exactly the input botocore was given, accept it as valid, and serialize a
minimal output that botocore parses back to the same values.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from botocore import xform_name
from tests.unit.wire.helpers import SECRET_KEY, Capture, CapturedRequest, make_client, minimal_value

from openprofiles.wire.dispatch import ApiDispatcher
from openprofiles.wire.model import load_service_model
from openprofiles.wire.sigv4 import verify_request

MODEL = load_service_model()


def _authenticate(method: str, raw_path: str, raw_query: str, headers: Any, body: bytes) -> str:
    return verify_request(
        method,
        raw_path,
        raw_query,
        headers,
        body,
        lambda key: SECRET_KEY if key == "AKIDTEST" else None,
        datetime.now(UTC),
        900,
    )


def test_model_has_the_expected_operations() -> None:
    names = MODEL.operation_names
    assert len(names) >= 106
    assert {"CreateDomain", "TagResource", "MergeProfiles", "GetIntegration"} <= set(names)


@pytest.mark.parametrize("full", [False, True], ids=["required", "all-members"])
@pytest.mark.parametrize("operation", MODEL.operation_names)
def test_operation_round_trips(operation: str, full: bool) -> None:
    operation_model = MODEL.operation_model(operation)
    input_shape = operation_model.input_shape
    output_shape = operation_model.output_shape
    params = minimal_value(input_shape, full=full) if input_shape else {}
    output = minimal_value(output_shape, full=full) if output_shape else {}
    status_members = [
        name
        for name, member in (
            operation_model.output_shape.members.items() if operation_model.output_shape else []
        )
        if member.serialization.get("location") == "statusCode"
    ]
    for name in status_members:
        # botocore always reports the HTTP status in such a member; send a non-default one.
        output[name] = 202
    seen: list[tuple[str, str, dict[str, Any]]] = []

    def invoke(name: str, principal: str, parsed: dict[str, Any]) -> dict[str, Any]:
        seen.append((name, principal, parsed))
        return output

    dispatcher = ApiDispatcher(MODEL, {name: invoke for name in MODEL.operation_names})

    def server(request: CapturedRequest) -> tuple[int, dict[str, str], bytes]:
        return dispatcher.handle(
            request.method,
            request.raw_path,
            request.raw_query,
            request.headers,
            request.body,
            _authenticate,
            invoke,
        )

    capture = Capture(server=server)
    client = make_client(capture)
    response = getattr(client, xform_name(operation))(**params)

    assert seen, f"{operation} never reached the handler"
    name, principal, parsed = seen[0]
    assert name == operation
    assert principal == "AKIDTEST"
    assert parsed == params
    metadata = response.pop("ResponseMetadata")
    expected_status = 202 if status_members else operation_model.http.get("responseCode", 200)
    assert metadata["HTTPStatusCode"] == expected_status
    assert metadata["HTTPHeaders"]["x-amzn-requestid"] == metadata["RequestId"]
    assert response == output
