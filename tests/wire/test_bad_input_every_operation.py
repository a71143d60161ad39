"""Bad input to every implemented operation is refused in the AWS error format and harms nothing.

A deterministic, model-driven fuzz (fixed seed, no extra library): for each operation the
server implements, a model-valid input is built from the botocore shapes, then broken one way
at a time — a required member left out, a member of the wrong JSON type, a null list item, a
string too long or off its pattern or enum, an integer out of range, a NUL or lone surrogate,
a bad path label or query value, a body that is not a JSON object — plus requests the model
allows but the operation's own rules refuse, all aimed at a seeded domain. Each is signed with
botocore's SigV4 and sent as is; each must be a 4xx naming one of the operation's model errors
(or one the wire layer answers for every operation) in `x-amzn-ErrorType`, with a JSON
`Message`, within 5 s. Afterwards the seeded domain reads back exactly as before and the
server logged no unhandled error. Real requests against a live server on both backends
(PostgreSQL with a smaller sample). Also a regression test for each bound the fuzz found
missing.
"""

from __future__ import annotations

import copy
import json
import logging
import random
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import botocore.auth
import httpx
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from botocore.model import Shape

from openprofiles.wire.model import load_service_model
from openprofiles.wire.validate import validate_input

MODEL = load_service_model()
SEED = 20261201
# Broken requests per operation: on SQLite every one built (about 1,600 in all, a few seconds),
# on PostgreSQL a sample, as its run is the slower one.
PER_OPERATION: dict[str, int | None] = {"sqlite": None, "postgres": 15}
SLOW_SECONDS = 5.0
# What the wire layer may answer for any operation (wire.errors, auth), beside the model's own.
COMMON_ERRORS = frozenset(
    {
        "BadRequestException",
        "ResourceNotFoundException",
        "AccessDeniedException",
        "ThrottlingException",
        "RequestEntityTooLargeException",
        "UnknownOperationException",
        "MethodNotAllowedException",
    }
)
DOMAIN = "fuzzseed"
TYPE_DEFINITION: dict[str, Any] = {
    "Description": "fuzz seed",
    "AllowProfileCreation": True,
    "Fields": {
        "id": {"Source": "_source.id"},
        "cust": {"Source": "_source.cust"},
        "email": {"Source": "_source.email", "Target": "_profile.EmailAddress"},
    },
    "Keys": {
        "custId": [{"StandardIdentifiers": ["PROFILE"], "FieldNames": ["cust"]}],
        "uid": [{"StandardIdentifiers": ["UNIQUE"], "FieldNames": ["id"]}],
    },
}


def implemented_operations(live_server: Any) -> list[str]:
    return sorted(live_server.app.state.registry)


@dataclass
class Sent:
    operation: str
    what: str
    method: str
    path: str
    query: list[tuple[str, str]]
    body: bytes


# ------------------------------------------------------------------------ valid inputs


@dataclass
class Seeded:
    profile_ids: list[str]
    account: str
    region: str

    @property
    def arn(self) -> str:
        return f"arn:aws:profile:{self.region}:{self.account}:domains/{DOMAIN}"


def _valid_string(shape: Shape, name: str, seeded: Seeded) -> str:
    known = {
        "DomainName": DOMAIN,
        "ObjectTypeName": "T",
        "ProfileId": seeded.profile_ids[0],
        "MainProfileId": seeded.profile_ids[0],
        "KeyName": "custId",
        "TemplateId": "Salesforce-Account",
        "Uri": f"arn:aws:sqs:{seeded.region}:{seeded.account}:fuzz",
        "resourceArn": seeded.arn,
        "Object": json.dumps({"id": "new", "cust": "c-new"}),
        "JobId": "3f1e2d4c00004000800000000000000a",
        "SearchKey": "custId",
        "SearchValue": "c0",
        "Description": "d",
    }
    if name in known:
        return known[name]
    if shape.enum:
        return str(shape.enum[0])
    low = shape.metadata.get("min", 1) or 1
    pattern = shape.metadata.get("pattern")
    arns = ("arn:aws:kms:us-east-1:000000000000:key/k", "arn:aws:iam::000000000000:role/r")
    for candidate in ("abc", *arns, seeded.profile_ids[0], "1:00", "a" * low):
        if len(candidate) < low or len(candidate) > shape.metadata.get("max", 10**6):
            continue
        if pattern is None or re.search(pattern, candidate):
            return candidate
    return "a" * low


def _valid(shape: Shape, name: str, seeded: Seeded, rnd: random.Random) -> Any:
    kind = shape.type_name
    if kind == "structure":
        members = list(shape.members.items())
        if shape.metadata.get("union"):
            member_name, member = members[0]
            return {member_name: _valid(member, member_name, seeded, rnd)}
        # An optional timestamp is left out: validate_input takes it parsed, not as sent.
        return {
            n: _valid(m, n, seeded, rnd)
            for n, m in members
            if n in shape.required_members or (m.type_name != "timestamp" and rnd.random() < 0.5)
        }
    if kind == "list":
        if name in ("ProfileIds", "ProfileIdsToBeMerged"):
            return [seeded.profile_ids[1]]
        if name == "Items":
            return [{"Id": "1", "Object": json.dumps({"id": "b", "cust": "c-b"})}]
        return [_valid(shape.member, name, seeded, rnd)]
    if kind == "map":
        if name in ("Fields", "Keys"):
            return copy.deepcopy(TYPE_DEFINITION[name])
        return {_valid(shape.key, "", seeded, rnd): _valid(shape.value, "", seeded, rnd)}
    if kind == "string":
        return _valid_string(shape, name, seeded)
    if kind in ("integer", "long"):
        return int(shape.metadata.get("min", 1))
    if kind in ("double", "float"):
        return float(shape.metadata.get("min", 0))
    if kind == "boolean":
        return True
    raise AssertionError(f"no valid value for {kind} {name}")


def valid_input(operation: str, seeded: Seeded, rnd: random.Random) -> dict[str, Any]:
    """A model-valid input naming the seeded domain: never sent, only broken."""
    shape = MODEL.operation_model(operation).input_shape
    params = _valid(shape, "", seeded, rnd)
    for member in ("NextToken", "TemplateId", "EncryptionKey", "DefaultEncryptionKey"):
        if member not in shape.required_members:
            params.pop(member, None)
    if operation == "PutProfileObjectType":
        params.update(copy.deepcopy(TYPE_DEFINITION))
    validate_input(shape, params)  # each break below is then the one thing wrong
    return params


# ------------------------------------------------------------------------ breaking them


def _members(shape: Shape, value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The path of every member (in the body, the query or a header) present in `value`."""
    if shape.type_name == "structure" and isinstance(value, dict):
        for name, item in value.items():
            member = shape.members[name]
            if not path and member.serialization.get("location") == "uri":
                continue  # path labels are broken by _bad_labels
            yield (*path, name)
            yield from _members(member, item, (*path, name))
    elif shape.type_name == "list" and isinstance(value, list):
        for index, item in enumerate(value):
            yield (*path, index)
            yield from _members(shape.member, item, (*path, index))
    elif shape.type_name == "map" and isinstance(value, dict):
        for key, item in value.items():
            yield from _members(shape.value, item, (*path, key))


def _shape_at(shape: Shape, path: tuple[Any, ...]) -> Shape:
    for step in path:
        if shape.type_name == "structure":
            shape = shape.members[step]
        elif shape.type_name == "list":
            shape = shape.member
        else:
            shape = shape.value
    return shape


def _with(params: dict[str, Any], path: tuple[Any, ...], value: Any, *, drop: bool = False) -> Any:
    broken = copy.deepcopy(params)
    here = broken
    for step in path[:-1]:
        here = here[step]
    if drop:
        del here[path[-1]]
    else:
        here[path[-1]] = value
    return broken


_WRONG_TYPES: dict[str, list[Any]] = {
    "string": [7, True, ["a"], {"a": "b"}],
    "integer": ["5", 1.5, True, [1]],
    "long": ["5", 2.5, False, {}],
    "double": ["0.5", True, [0.5]],
    "boolean": ["true", 1, [True]],
    "list": ["a", 1, {"a": "b"}],
    "map": ["a", 1, ["a"]],
    "structure": ["a", 1, ["a"]],
}


def _breaks(shape: Shape, path: tuple[Any, ...], *, in_json: bool) -> Iterator[tuple[str, Any]]:
    """(what, value) pairs that each make the member at `path` invalid. A member in the query
    string is text whatever its type: _bad_queries sends what does not parse."""
    kind = shape.type_name
    where = ".".join(map(str, path))
    for wrong in _WRONG_TYPES[kind] if in_json else ():
        yield f"{where} as {type(wrong).__name__}", wrong
    if kind == "string":
        yield f"{where} with NUL", "a\x00b"
        yield f"{where} with a lone surrogate", "a\ud800b"
        high = shape.metadata.get("max")
        if high is not None and high < 300_000:
            yield f"{where} too long", "a" * (high + 1)
        if shape.metadata.get("min", 0) >= 1:
            yield f"{where} empty", ""
        if shape.enum:
            yield f"{where} not in enum", "NOT_ONE_OF_THEM"
        elif shape.metadata.get("pattern") and not re.search(shape.metadata["pattern"], "é /?"):
            yield f"{where} off pattern", "é /?"
    if kind in ("integer", "long"):
        yield f"{where} huge", 10**20
        low, high = shape.metadata.get("min"), shape.metadata.get("max")
        if low is not None:
            yield f"{where} below min", low - 1
        if high is not None:
            yield f"{where} above max", high + 1
    if kind == "list" and in_json:
        yield f"{where} with a null item", [None]
    if kind == "map" and in_json:
        yield f"{where} with a null value", {"k": None}


def broken_inputs(operation: str, params: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Invalid variants of the valid `params`, one violation each."""
    shape = MODEL.operation_model(operation).input_shape
    for name in shape.required_members:
        if shape.members[name].serialization.get("location") != "uri":
            yield f"without {name}", _with(params, (name,), None, drop=True)
    for path in _members(shape, params):
        in_json = not shape.members[path[0]].serialization.get("location")
        for what, value in _breaks(_shape_at(shape, path), path, in_json=in_json):
            yield what, _with(params, path, value)


def _bad_labels(operation: str, params: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    shape = MODEL.operation_model(operation).input_shape
    for name, member in shape.members.items():
        if member.serialization.get("location") != "uri":
            continue
        for value in ("a/b", "é", "a" * 300, "a\x01"):
            yield f"path {name}={value[:5]!r}", {**params, name: value}


# ------------------------------------------------------------------------ the wire


def serialize(operation: str, params: dict[str, Any], what: str) -> Sent:
    """The rest-json request of `params`, whatever their types (botocore's serializer would
    refuse or coerce the broken ones)."""
    model = MODEL.operation_model(operation)
    shape = model.input_shape
    path = model.http["requestUri"].split("?", 1)[0]
    query: list[tuple[str, str]] = []
    body: dict[str, Any] = {}
    for name, value in params.items():
        member = shape.members[name]
        wire = member.serialization.get("name", name)
        location = member.serialization.get("location")
        text = value if isinstance(value, str) else json.dumps(value)
        if location == "uri":
            label = quote(text.encode("utf-8", "surrogatepass"), safe="-_.~")
            path = path.replace("{" + wire + "}", label)
        elif location == "querystring":
            values = value if isinstance(value, list) else [value]
            query.extend((wire, v if isinstance(v, str) else json.dumps(v)) for v in values)
        else:
            body[wire] = value
    has_body = any(not m.serialization.get("location") for m in shape.members.values())
    raw = json.dumps(body).encode() if has_body else b""
    return Sent(operation, what, model.http["method"], path, query, raw)


class Wire:
    """Signs a Sent with botocore's SigV4 and sends it exactly as built."""

    def __init__(self, live_server: Any) -> None:
        self.url = live_server.url
        self.credentials = Credentials(*live_server.admin_key)
        self.region = live_server.settings.region
        self.client = httpx.Client(timeout=SLOW_SECONDS * 4)

    def send(self, sent: Sent) -> tuple[httpx.Response, float]:
        query = "&".join(f"{_encode(name)}={_encode(value)}" for name, value in sent.query)
        url = f"{self.url}{sent.path}" + (f"?{query}" if query else "")
        request = AWSRequest(
            method=sent.method,
            url=url,
            data=sent.body,
            headers={"Content-Type": "application/json"},
        )
        botocore.auth.SigV4Auth(self.credentials, "profile", self.region).add_auth(request)
        started = time.monotonic()
        response = self.client.request(
            sent.method, url, headers=dict(request.headers.items()), content=sent.body
        )
        return response, time.monotonic() - started


def _encode(text: str) -> str:
    if re.fullmatch(r"%[0-9A-Za-z]{2}", text):
        return text  # an escape sent as is (a bad one on purpose)
    return quote(text.encode("utf-8", "surrogatepass"), safe="-_.~")


def refusal_problem(sent: Sent, response: httpx.Response, elapsed: float) -> str | None:
    """What is wrong with the answer to a request that must be refused, if anything."""
    if elapsed > SLOW_SECONDS:
        return f"took {elapsed:.1f} s"
    if not 400 <= response.status_code < 500:
        return f"HTTP {response.status_code}"
    error = response.headers.get("x-amzn-ErrorType")
    allowed = {e.name for e in MODEL.operation_model(sent.operation).error_shapes}
    if error not in (allowed | COMMON_ERRORS) - {"InternalServerException"}:
        return f"x-amzn-ErrorType {error!r} is none of the operation's errors"
    try:
        message = response.json()["Message"]
    except (ValueError, KeyError, TypeError):
        return f"no JSON Message in {response.content[:100]!r}"
    if not isinstance(message, str) or len(message) < 10:
        return f"unhelpful Message {message!r}"
    return None


# ------------------------------------------------------------------------ whole-request breaks


def _bad_bodies(sent: Sent) -> Iterator[Sent]:
    for what, body in [
        ("body not JSON", b"not json"),
        ("body a JSON array", b"[]"),
        ("body a JSON number", b"42"),
        ("body with trailing garbage", sent.body + b"}x"),
        ("body not UTF-8", b'{"a": "\xff\xfe"}'),
        ("body nested deeply", b'{"a":' + b"[" * 3000 + b"]" * 3000 + b"}"),
    ]:
        yield Sent(sent.operation, what, sent.method, sent.path, sent.query, body)


def _bad_queries(sent: Sent) -> Iterator[Sent]:
    shape = MODEL.operation_model(sent.operation).input_shape
    for name, member in shape.members.items():
        if member.serialization.get("location") != "querystring":
            continue
        wire = member.serialization.get("name", name)
        if member.type_name == "integer":
            values = ["abc", "-1", "0", "100000000000000000000", "1.5", "%FF"]
        elif member.type_name == "boolean":
            values = ["yes", "%FF"]
        else:
            values = ["%FF"]
        for value in values:
            query = [*(q for q in sent.query if q[0] != wire), (wire, value)]
            what = f"query {wire}={value}"
            yield Sent(sent.operation, what, sent.method, sent.path, query, sent.body)


def semantic_refusals(seeded: Seeded) -> list[tuple[str, dict[str, Any]]]:
    """Inputs the model allows but the operations' own rules refuse: they reach the services."""
    one, two = seeded.profile_ids[:2]
    unknown_field = {"x": [{"StandardIdentifiers": ["PROFILE"], "FieldNames": ["nope"]}]}
    d = {"DomainName": DOMAIN}
    return [
        ("PutProfileObject", {**d, "ObjectTypeName": "T", "Object": "[]"}),
        ("PutProfileObject", {**d, "ObjectTypeName": "T", "Object": '{"id": NaN}'}),
        ("PutProfileObject", {**d, "ObjectTypeName": "nope", "Object": "{}"}),
        (
            "BatchPutProfileObject",
            {**d, "ObjectTypeName": "nope", "Items": [{"Id": "1", "Object": "{}"}]},
        ),
        (
            "PutProfileObjectType",
            {**d, "ObjectTypeName": "T", **TYPE_DEFINITION, "Keys": unknown_field},
        ),
        ("PutProfileObjectType", {**d, "ObjectTypeName": "T", "Description": "d"}),
        ("PutProfileObjectType", {**d, "ObjectTypeName": "_x", **TYPE_DEFINITION}),
        ("MergeProfiles", {**d, "MainProfileId": one, "ProfileIdsToBeMerged": [one]}),
        ("MergeProfiles", {**d, "MainProfileId": "0" * 32, "ProfileIdsToBeMerged": [two]}),
        ("SearchProfiles", {**d, "KeyName": "custId", "Values": ["v"] * 101}),
        ("SearchProfiles", {**d, "KeyName": "custId", "Values": ["v"], "NextToken": "forged"}),
        ("AddProfileKey", {**d, "ProfileId": one, "KeyName": "_phone", "Values": ["abc"]}),
        ("AddProfileKey", {**d, "ProfileId": "0" * 32, "KeyName": "custId", "Values": ["v"]}),
        ("DeleteProfileKey", {**d, "ProfileId": one, "KeyName": "custId", "Values": ["none"]}),
        ("DeleteProfile", {**d, "ProfileId": "0" * 32}),
        (
            "DeleteProfileObject",
            {**d, "ProfileId": one, "ObjectTypeName": "T", "ProfileObjectUniqueKey": "none"},
        ),
        ("DeleteProfileObjectType", {**d, "ObjectTypeName": "_profile"}),
        ("DeleteIntegration", {**d, "Uri": f"arn:aws:sqs:{seeded.region}:1:none"}),
        ("UpdateProfile", {**d, "ProfileId": "0" * 32, "FirstName": "x"}),
        (
            "UpdateDomain",
            {**d, "RuleBasedMatching": {"Enabled": True, "MatchingRules": [{"Rule": ["Nope"]}]}},
        ),
        ("UpdateDomain", {**d, "DeadLetterQueueUrl": "not a queue"}),
        ("CreateDomain", {**d, "DefaultExpirationDays": 5}),
        ("TagResource", {"resourceArn": seeded.arn, "tags": {f"k{i}": "v" for i in range(50)}}),
        ("TagResource", {"resourceArn": seeded.arn + "/object-types/nope", "tags": {"a": "b"}}),
        ("UntagResource", {"resourceArn": "arn:aws:profile:x:1:nope/a", "tagKeys": ["k"]}),
        (
            "GetAutoMergingPreview",
            {
                **d,
                "Consolidation": {"MatchingAttributesList": [["Nope"]]},
                "ConflictResolution": {"ConflictResolvingModel": "RECENCY"},
            },
        ),
        (
            "GetSimilarProfiles",
            {**d, "MatchType": "ML_BASED_MATCHING", "SearchKey": "custId", "SearchValue": "c0"},
        ),
        ("ListProfileObjects", {**d, "ObjectTypeName": "nope", "ProfileId": one}),
        ("GetProfileObjectTypeTemplate", {"TemplateId": "nope"}),
        ("GetIdentityResolutionJob", {**d, "JobId": "3f1e2d4c00004000800000000000000a"}),
    ]


# ------------------------------------------------------------------------ the seeded domain


def seed_domain(client: Any, live_server: Any) -> Seeded:
    client.create_domain(DomainName=DOMAIN, DefaultExpirationDays=30, Tags={"team": "a"})
    client.put_profile_object_type(DomainName=DOMAIN, ObjectTypeName="T", **TYPE_DEFINITION)
    ids = []
    for i in range(3):
        email = f"p{i}@example.com"
        pid = client.create_profile(DomainName=DOMAIN, FirstName=f"P{i}", EmailAddress=email)
        ids.append(pid["ProfileId"])
        obj = json.dumps({"id": f"o{i}", "cust": f"c{i}", "email": email})
        client.put_profile_object(DomainName=DOMAIN, ObjectTypeName="T", Object=obj)
        client.add_profile_key(
            DomainName=DOMAIN, ProfileId=ids[-1], KeyName="custId", Values=[f"k{i}"]
        )
    return Seeded(ids, live_server.settings.account_id, live_server.settings.region)


def read_back(client: Any, seeded: Seeded) -> dict[str, Any]:
    """Everything stored of the seeded domain, as the API shows it."""
    domain = client.get_domain(DomainName=DOMAIN)
    object_type = client.get_profile_object_type(DomainName=DOMAIN, ObjectTypeName="T")
    found = client.search_profiles(
        DomainName=DOMAIN, KeyName="_profileId", Values=seeded.profile_ids
    )
    state = {
        "domain": {k: v for k, v in domain.items() if k not in ("ResponseMetadata", "Stats")},
        "types": client.list_profile_object_types(DomainName=DOMAIN)["Items"],
        "type": {k: v for k, v in object_type.items() if k != "ResponseMetadata"},
        "profiles": sorted(found["Items"], key=lambda p: p["ProfileId"]),
        "objects": [
            client.list_profile_objects(DomainName=DOMAIN, ObjectTypeName="T", ProfileId=pid)[
                "Items"
            ]
            for pid in seeded.profile_ids
        ],
        "keys": [
            client.search_profiles(DomainName=DOMAIN, KeyName="custId", Values=[f"k{i}"])["Items"]
            for i in range(len(seeded.profile_ids))
        ],
        "tags": client.list_tags_for_resource(resourceArn=seeded.arn)["tags"],
        "domains": [d["DomainName"] for d in client.list_domains()["Items"]],
    }
    return json.loads(json.dumps(state, default=str))


class _Unhandled(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record.getMessage())


def requests_to_send(live_server: Any, seeded: Seeded, backend: str) -> list[Sent]:
    rnd = random.Random(SEED)
    sends: list[Sent] = []
    for operation in implemented_operations(live_server):
        params = valid_input(operation, seeded, rnd)
        valid = serialize(operation, params, "valid")
        variants = [serialize(operation, p, what) for what, p in broken_inputs(operation, params)]
        variants += [serialize(operation, p, what) for what, p in _bad_labels(operation, params)]
        variants += list(_bad_queries(valid))
        if valid.body:
            variants += list(_bad_bodies(valid))
        budget = PER_OPERATION[backend]
        sends += variants if budget is None else rnd.sample(variants, min(budget, len(variants)))
    for operation, params in semantic_refusals(seeded):
        sends.append(serialize(operation, params, f"refused by {operation}'s rules"))
    return sends


def test_bad_input_to_every_operation_is_refused_cleanly_and_changes_nothing(
    live_server: Any,
) -> None:
    client = live_server.client()
    seeded = seed_domain(client, live_server)
    before = read_back(client, seeded)
    backend = "sqlite" if live_server.services.database.is_sqlite else "postgres"
    sends = requests_to_send(live_server, seeded, backend)
    assert {s.operation for s in sends} >= set(implemented_operations(live_server))
    unhandled = _Unhandled()
    wire_log = logging.getLogger("openprofiles.wire")
    wire_log.addHandler(unhandled)
    wire = Wire(live_server)
    try:
        problems = []
        for sent in sends:
            response, elapsed = wire.send(sent)
            problem = refusal_problem(sent, response, elapsed)
            if problem is not None:
                problems.append(f"{sent.operation} ({sent.what}): {problem}")
    finally:
        wire_log.removeHandler(unhandled)
    assert problems == []
    assert unhandled.records == []
    assert read_back(client, seeded) == before


# ------------------------------------------------------------------------ regressions


def _error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int, str]:
    response = exc.value.response
    return (
        str(response["Error"]["Code"]),
        int(response["ResponseMetadata"]["HTTPStatusCode"]),
        str(response["Error"]["Message"]),
    )


_UNIQUE = {"u": [{"StandardIdentifiers": ["UNIQUE"], "FieldNames": ["f"]}]}
_PROFILE = {"StandardIdentifiers": ["PROFILE"], "FieldNames": ["g"]}


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (
            _UNIQUE | {f"p{i}": [_PROFILE] for i in range(250)},
            "An object type can have at most 250 keys; this one has 251.",
        ),
        (
            _UNIQUE | {"p": [_PROFILE] * 250},
            "An object type's keys can have at most 250 definitions in all; these have 251.",
        ),
        (
            _UNIQUE | {"p": [{"StandardIdentifiers": ["PROFILE"], "FieldNames": ["g"] * 251}]},
            "Key p lists 251 FieldNames in a definition; a definition can list at most 250.",
        ),
        (
            _UNIQUE | {"p": [{"StandardIdentifiers": ["PROFILE"] * 251, "FieldNames": ["g"]}]},
            "Key p lists 251 StandardIdentifiers in a definition; a definition can list at most "
            "250.",
        ),
    ],
    ids=["keys", "definitions", "field-names", "standard-identifiers"],
)
def test_an_object_type_whose_keys_are_too_many_is_refused(
    live_server: Any, keys: dict[str, Any], message: str
) -> None:
    # 10,000 keys were accepted, and then every PutProfileObject of the type took ~54 s;
    # 200,000 definitions of one key took 7.5 s to store; a million StandardIdentifiers, 11 MB.
    client = live_server.client()
    domain = f"fuzzkeys{len(json.dumps(keys))}"
    client.create_domain(DomainName=domain, DefaultExpirationDays=30)
    fields = {"f": {"Source": "_source.f"}, "g": {"Source": "_source.g"}}
    with pytest.raises(ClientError) as exc:
        client.put_profile_object_type(
            DomainName=domain, ObjectTypeName="K", Description="d", Fields=fields, Keys=keys
        )
    assert _error(exc) == ("BadRequestException", 400, message)
    assert client.list_profile_object_types(DomainName=domain)["Items"] == []


def test_put_integration_bounds_its_object_type_names(live_server: Any) -> None:
    # 150,000 event types were accepted in 7 s; the body limit allows about a million.
    bound = 1000  # wire.validate.ITEM_BOUNDS
    client = live_server.client()
    client.create_domain(DomainName="fuzzotn", DefaultExpirationDays=30)
    client.put_profile_object_type(DomainName="fuzzotn", ObjectTypeName="T", **TYPE_DEFINITION)
    uri = f"arn:aws:sqs:{live_server.settings.region}:{live_server.settings.account_id}:q"
    with pytest.raises(ClientError) as exc:
        client.put_integration(
            DomainName="fuzzotn",
            Uri=uri,
            ObjectTypeNames={f"event{i}": "T" for i in range(bound + 1)},
        )
    assert _error(exc) == (
        "BadRequestException",
        400,
        f"1 validation error detected: ObjectTypeNames must have length at most {bound}",
    )
    assert client.list_integrations(DomainName="fuzzotn")["Items"] == []
