"""Against a live server (both backends): a request is answered as the operation it names or
refused, never read as another value or another operation.

- An empty URI label: botocore with parameter validation off (other SDKs have none) sends
  GetProfileObjectType(ObjectTypeName='') as `GET /domains/d/object-types/`, which was routed
  to ListProfileObjectTypes and its answer read by the client as an empty Get.
- A path escape that is not UTF-8 (`%FF`) was read as U+FFFD, while the query string's refused.
- Epoch seconds as text in another form than a number's ("١٩٠٠_٠٠٠_٠٠٠") were read by float()
  as the time they spell.
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

KMS = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"


@pytest.fixture
def domain(live_server: Any) -> str:
    name = f"labels-{uuid.uuid4().hex[:10]}"
    client = live_server.client()
    client.create_domain(DomainName=name, DefaultExpirationDays=30)
    return name


def _bad_request(call: Any) -> str:
    with pytest.raises(ClientError) as caught:
        call()
    error = caught.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400, error
    assert error["Error"]["Code"] == "BadRequestException"
    return str(error["Error"]["Message"])


def _signed(live_server: Any, method: str, path: str, body: bytes = b"") -> tuple[int, Any]:
    """Send `path` exactly as given (http.client does not re-encode it), signed by the admin
    key as botocore signs it."""
    request = AWSRequest(method=method, url=live_server.url + path, data=body)
    signer = botocore.auth.SigV4Auth(Credentials(*live_server.admin_key), "profile", "us-east-1")
    signer.add_auth(request)
    connection = http.client.HTTPConnection(urlsplit(live_server.url).netloc, timeout=20)
    try:
        connection.request(method, path, body=body, headers=dict(request.headers.items()))
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        connection.close()


@pytest.mark.parametrize(
    ("operation", "kwargs", "member"),
    [
        ("get_profile_object_type", {"DomainName": "{d}", "ObjectTypeName": ""}, "ObjectTypeName"),
        (
            "delete_profile_object_type",
            {"DomainName": "{d}", "ObjectTypeName": ""},
            "ObjectTypeName",
        ),
        ("get_domain", {"DomainName": ""}, "DomainName"),
        ("get_profile_object_type_template", {"TemplateId": ""}, "TemplateId"),
    ],
)
def test_an_empty_label_from_boto3_is_refused_not_routed_to_the_list(
    live_server, domain, operation, kwargs, member
):
    client = live_server.client(parameter_validation=False)
    arguments = {name: value.format(d=domain) for name, value in kwargs.items()}
    message = _bad_request(lambda: getattr(client, operation)(**arguments))
    assert message == f"1 validation error detected: {member} must have length at least 1"


def test_list_paths_and_a_trailing_slash_after_a_full_path_still_work(live_server, domain):
    client = live_server.client()
    assert client.list_profile_object_types(DomainName=domain)["Items"] == []
    assert domain in [d["DomainName"] for d in client.list_domains()["Items"]]
    status, body = _signed(live_server, "GET", f"/domains/{domain}/")
    assert (status, body["DomainName"]) == (200, domain)


@pytest.mark.parametrize(
    "path",
    [
        "/domains/{d}/profile-attributes/Address%FF/values",
        "/domains/{d}%FF",
        "/domains/{d}/object-types%FF",
    ],
)
def test_a_path_that_is_not_utf8_is_refused(live_server, domain, path):
    status, body = _signed(live_server, "GET", path.format(d=domain))
    assert status == 400, body
    assert body["Message"] == "The path is not valid UTF-8."


def test_a_utf8_label_is_still_read(live_server, domain):
    status, body = _signed(
        live_server, "GET", f"/domains/{domain}/profile-attributes/%C3%BC/values"
    )
    # Routed as sent, to the operation (which this server does not implement yet).
    assert status == 501 and "ListProfileAttributeValues" in body["Message"], body


def _flow_integration(live_server: Any, start: object) -> bytes:
    """PutIntegration's body for a scheduled flow starting at `start`."""
    folder = live_server.settings.data_dir / "flows" / "ts"
    scheduled = {"ScheduleExpression": "rate(1 hours)", "ScheduleStartTime": start}
    flow = {
        "FlowName": "ts-flow",
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
            "TriggerProperties": {"Scheduled": scheduled},
        },
    }
    put = {"ObjectTypeName": "Zendesk-users", "FlowDefinition": flow}
    return json.dumps(put, ensure_ascii=False).encode()


@pytest.mark.parametrize("text", ["١٩٠٠_٠٠٠_٠٠٠", "1_900_000_000", " 1900000000", "+1900000000"])
def test_epoch_text_in_another_form_is_not_a_timestamp(live_server, domain, text):
    path = f"/domains/{domain}/integrations"
    status, answer = _signed(live_server, "PUT", path, _flow_integration(live_server, text))
    assert status == 400, answer
    assert "ScheduleStartTime must be a timestamp" in answer["Message"]
    # The same flow with epoch seconds as a number (or a number's text) is an integration.
    for start in (1900000000, "1900000000"):
        status, answer = _signed(live_server, "PUT", path, _flow_integration(live_server, start))
        assert status == 200, answer
