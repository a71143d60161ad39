"""A path with a '.' or '..' segment is refused before routing, against a live server (both
backends), through boto3 and raw HTTP.

SigV4 signs the path with its dot segments removed, and botocore sends a label that is '.' or
'..' as it is: DeleteWorkflow(WorkflowId='..') goes out as `DELETE /domains/d/workflows/..`
signed as `DELETE /domains/d`, a DeleteDomain. The server must neither check one operation's
signature and run another, nor run the operation the signature names (wire.dispatch
.refuse_dot_segments).
"""

from __future__ import annotations

import http.client
import json
import uuid
from typing import Any
from urllib.parse import urlsplit

import botocore.auth
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError


@pytest.fixture
def domain(live_server: Any) -> str:
    name = f"dots-{uuid.uuid4().hex[:10]}"
    live_server.client().create_domain(DomainName=name, DefaultExpirationDays=30)
    return name


def _bad_request(call: Any) -> str:
    with pytest.raises(ClientError) as caught:
        call()
    error = caught.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert error["Error"]["Code"] == "BadRequestException"
    return str(error["Error"]["Message"])


@pytest.mark.parametrize("workflow_id", ["..", "."])
def test_a_dot_label_from_boto3_is_refused_and_nothing_else_runs(live_server, domain, workflow_id):
    client = live_server.client()
    message = _bad_request(
        lambda: client.delete_workflow(DomainName=domain, WorkflowId=workflow_id)
    )
    assert "'.' or '..' segment" in message
    # Signed as DeleteDomain (`..`) or as its own path without the label (`.`): neither ran.
    assert client.get_domain(DomainName=domain)["DomainName"] == domain


def test_a_dot_attribute_name_is_refused(live_server, domain):
    client = live_server.client()
    _bad_request(
        lambda: client.get_object_type_attribute_statistics(
            DomainName=domain, ObjectTypeName="any", AttributeName=".."
        )
    )


def test_a_label_with_dots_in_it_is_routed_as_usual(live_server, domain):
    with pytest.raises(ClientError) as caught:
        live_server.client().delete_workflow(DomainName=domain, WorkflowId="a..b")
    # DeleteWorkflow, reached and named: this server does not implement it.
    assert caught.value.response["Error"]["Code"] == "NotImplementedException"
    assert "DeleteWorkflow" in caught.value.response["Error"]["Message"]


@pytest.mark.parametrize(
    "path",
    [
        "/domains/{d}/workflows/..",
        "/domains/{d}/workflows/%2E%2E",
        "/domains/{d}/workflows/%2e",
        "/domains/{d}/./workflows/x",
        "/domains/x/../{d}",
    ],
)
def test_raw_dot_segments_are_refused_before_routing(live_server, domain, path):
    """Signed by a known key for the path as sent (botocore removes the dot segments when it
    signs): refused whatever the signature, and before it is checked."""
    path = path.format(d=domain)
    request = AWSRequest(method="DELETE", url=live_server.url + path, data=b"")
    signer = botocore.auth.SigV4Auth(Credentials(*live_server.admin_key), "profile", "us-east-1")
    signer.add_auth(request)
    signed = dict(request.headers.items())
    address = urlsplit(live_server.url)
    for headers in (signed, {}):
        # http.client sends the path as given (httpx and botocore's URL handling may not).
        connection = http.client.HTTPConnection(address.netloc, timeout=20)
        try:
            connection.request("DELETE", path, headers=headers)
            response = connection.getresponse()
            body = json.loads(response.read())
        finally:
            connection.close()
        assert response.status == 400, body
        assert response.getheader("x-amzn-ErrorType") == "BadRequestException"
        assert "'.' or '..' segment" in body["Message"]
    assert live_server.client().get_domain(DomainName=domain)["DomainName"] == domain
