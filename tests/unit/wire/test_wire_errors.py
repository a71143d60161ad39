"""Errors render as AWS does, and botocore/boto3 surface code, message and status."""

from __future__ import annotations

import json

import pytest
from botocore.awsrequest import HeadersDict
from botocore.exceptions import ClientError
from botocore.parsers import create_parser
from tests.unit.wire.helpers import Capture, make_client

from openprofiles.errors import BadRequest, NotFound, NotImplementedOperation, ServiceError
from openprofiles.wire.errors import UnknownOperation, render_error
from openprofiles.wire.model import load_service_model


@pytest.mark.parametrize(
    "error",
    [
        BadRequest("DomainName is required"),
        NotFound("Domain not found"),
        NotImplementedOperation("GetWorkflow"),
        UnknownOperation("No operation matches GET /x."),
    ],
)
def test_botocore_parses_rendered_errors(error: ServiceError) -> None:
    status, headers, body = render_error(error, "req-1")
    assert headers["x-amzn-ErrorType"] == error.code
    assert headers["x-amzn-RequestId"] == "req-1"
    assert json.loads(body) == {"Message": error.message}
    operation = load_service_model().operation_model("GetDomain")
    parsed = create_parser("rest-json").parse(
        {"status_code": status, "headers": HeadersDict(headers), "body": body},
        operation.output_shape,
    )
    assert parsed["Error"]["Code"] == error.code
    assert parsed["Error"]["Message"] == error.message
    assert parsed["ResponseMetadata"]["HTTPStatusCode"] == error.status
    assert parsed["ResponseMetadata"]["RequestId"] == "req-1"


def test_boto3_raises_modeled_exception() -> None:
    capture = Capture(reply=render_error(BadRequest("DomainName is required"), "req-2"))
    client = make_client(capture)
    with pytest.raises(client.exceptions.BadRequestException) as caught:
        client.get_domain(DomainName="d")
    response = caught.value.response
    assert response["Error"] == {"Code": "BadRequestException", "Message": "DomainName is required"}
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert isinstance(caught.value, ClientError)
