"""The API's body limit through a real boto3 client against a live server: the largest
model-valid BatchPutProfileObject (ten Objects of 256,000 emoji, about 30.7 MB once botocore
has JSON-escaped them) is accepted, and a body one byte over the operation's limit is a 413 in
the AWS error format (wire.body_size, wire.dispatch)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from openprofiles.wire.body_size import largest_bodies
from openprofiles.wire.dispatch import DEFAULT_MAX_BODY_BYTES
from openprofiles.wire.model import load_service_model

EMOJI = "\U0001f600"
MAX_OBJECT_CHARS = 256_000
# The model's longest ObjectTypeName and item Id: a worst case leaves nothing short.
TYPE_NAME = "N" * 255
NOTES: dict[str, Any] = {
    "Description": "notes",
    "AllowProfileCreation": True,
    "Fields": {"id": {"Source": "_source.id"}, "note": {"Source": "_source.note"}},
    "Keys": {"noteId": [{"StandardIdentifiers": ["PROFILE", "UNIQUE"], "FieldNames": ["id"]}]},
}
LIMIT = largest_bodies(load_service_model())["BatchPutProfileObject"]


def _largest_object(n: int) -> str:
    """A JSON object of exactly the model's 256,000 characters, nearly all of them emoji."""
    frame = json.dumps({"id": f"n{n}", "note": ""}, separators=(",", ":"))
    text = frame[:-2] + EMOJI * (MAX_OBJECT_CHARS - len(frame)) + frame[-2:]
    assert len(text) == MAX_OBJECT_CHARS
    return text


def _largest_items() -> list[dict[str, str]]:
    return [{"Id": f"{n:02d}" + "i" * 62, "Object": _largest_object(n)} for n in range(10)]


@pytest.fixture
def domain(live_server: Any) -> str:
    name = f"lim-{uuid.uuid4().hex[:10]}"
    client = live_server.client()
    client.create_domain(DomainName=name, DefaultExpirationDays=30)
    client.put_profile_object_type(DomainName=name, ObjectTypeName=TYPE_NAME, **NOTES)
    return name


def _pad_body_to(size: int) -> Any:
    """A botocore hook that pads the serialised body with JSON whitespace to `size` bytes,
    before it is signed: still the same, model-valid request, only longer."""

    def pad(request: Any, **_: Any) -> None:
        body = request.body
        assert len(body) <= size
        request.data = body + b" " * (size - len(body))

    return pad


def test_the_largest_valid_batch_is_accepted(live_server: Any, domain: str) -> None:
    client = live_server.client()
    sent: list[int] = []
    client.meta.events.register(
        "before-sign.customer-profiles.BatchPutProfileObject",
        lambda request, **_: sent.append(len(request.body)),
    )
    out = client.batch_put_profile_object(
        DomainName=domain, ObjectTypeName=TYPE_NAME, Items=_largest_items()
    )
    assert sent[0] > 30_000_000 > DEFAULT_MAX_BODY_BYTES
    assert sent[0] <= LIMIT
    assert out["Failed"] == []
    assert [s["Id"] for s in out["Successful"]] == [f"{n:02d}" + "i" * 62 for n in range(10)]
    profile = client.search_profiles(DomainName=domain, KeyName="noteId", Values=["n9"])["Items"]
    stored = client.list_profile_objects(
        DomainName=domain, ObjectTypeName=TYPE_NAME, ProfileId=profile[0]["ProfileId"]
    )["Items"]
    assert [json.loads(o["Object"])["note"] for o in stored] == [
        json.loads(_largest_object(9))["note"]
    ]


@pytest.mark.parametrize(("size", "accepted"), [(LIMIT, True), (LIMIT + 1, False)])
def test_a_body_over_the_limit_is_a_413(
    live_server: Any, domain: str, size: int, accepted: bool
) -> None:
    client = live_server.client()
    client.meta.events.register(
        "before-sign.customer-profiles.BatchPutProfileObject", _pad_body_to(size)
    )
    call = {"DomainName": domain, "ObjectTypeName": TYPE_NAME, "Items": _largest_items()}
    if accepted:
        assert client.batch_put_profile_object(**call)["Failed"] == []
        return
    with pytest.raises(ClientError) as caught:
        client.batch_put_profile_object(**call)
    error = caught.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert error["Error"]["Code"] == "RequestEntityTooLargeException"
    assert error["Error"]["Message"] == f"The request body exceeds {LIMIT} bytes."
