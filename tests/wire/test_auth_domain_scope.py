"""API credentials scoped to domains (auth.scope), with real boto3 against a live server on both
backends: a key limited to some domains is refused every other with AccessDeniedException (403,
IAM's wording), before its body is parsed; ListDomains and ListAccountIntegrations show only
its domains; the contact feeds reject, per record, what would go to another domain. Before
scopes, a key made for one domain reached them all."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

import boto3
import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from sqlalchemy import event
from tests.support.server import LiveServer
from tests.unit.integrations.integ_helpers import ctr

from openprofiles import audit
from openprofiles.auth.credentials import create_credential
from openprofiles.contacts.kept import count_unrouted
from openprofiles.contacts.service import connect_instance
from openprofiles.dlq.service import count as dead_letters
from openprofiles.store.conflicts import ConcurrentChange


def _instance() -> str:
    return f"arn:aws:connect:us-east-1:111122223333:instance/{uuid.uuid4()}"


class World:
    """Two domains, an instance associated with each, and a key limited to the first (and to
    a name no domain has yet)."""

    def __init__(self, server: LiveServer) -> None:
        tag = uuid.uuid4().hex[:8]
        self.server = server
        self.care, self.sales, self.future = f"care-{tag}", f"sales-{tag}", f"future-{tag}"
        admin = server.client()
        for name in (self.care, self.sales):
            admin.create_domain(DomainName=name, DefaultExpirationDays=30)
        self.care_instance, self.sales_instance = _instance(), _instance()
        admin.put_integration(DomainName=self.care, Uri=self.care_instance)
        admin.put_integration(DomainName=self.sales, Uri=self.sales_instance)
        with server.services.write() as tx:
            issued = create_credential(tx, role="admin", domains=[self.care, self.future])
        self.key = (issued.access_key_id, issued.secret_access_key)
        self.client = boto3.client(
            "customer-profiles",
            endpoint_url=server.url,
            region_name=server.settings.region,
            aws_access_key_id=self.key[0],
            aws_secret_access_key=self.key[1],
            config=Config(retries={"max_attempts": 1}),
        )

    def arn(self, domain: str) -> str:
        settings = self.server.settings
        return f"arn:aws:profile:{settings.region}:{settings.account_id}:domains/{domain}"

    def post(self, path: str, body: bytes, method: str = "POST") -> httpx.Response:
        """A request signed with the scoped key, its body as given (not necessarily valid)."""
        request = AWSRequest(
            method=method,
            url=self.server.url + path,
            data=body,
            headers={"Content-Type": "application/json"},
        )
        SigV4Auth(Credentials(*self.key), "profile", self.server.settings.region).add_auth(request)
        return httpx.request(
            method,
            self.server.url + path,
            content=body,
            headers=dict(request.headers.items()),
            timeout=10,
        )


@pytest.fixture
def world(live_server: LiveServer) -> World:
    return World(live_server)


@pytest.fixture
def audit_lines(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    """The audit lines written so far in the test (the server runs in this process)."""
    caplog.set_level(logging.INFO, logger=audit.logger.name)
    return lambda: [r.getMessage() for r in caplog.records if r.name == audit.logger.name]


def _feed_refusal(world: World) -> str:
    """The reason a record (or event) of an instance outside the scope is refused with: it
    names no domain, and says alike for an instance associated with none."""
    return (
        f"User: {world.key[0]} is not authorized to send records of this instance: it is not "
        "associated with a domain this access key may feed (the key is limited to some "
        "domains). The record is neither applied nor kept."
    )


def _denied(call: Callable[[], Any]) -> dict[str, Any]:
    with pytest.raises(ClientError) as raised:
        call()
    error: dict[str, Any] = raised.value.response["Error"]
    assert error["Code"] == "AccessDeniedException", error
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    return error


def test_a_scoped_key_acts_on_its_domains_and_is_refused_the_others(world: World) -> None:
    client = world.client
    assert client.get_domain(DomainName=world.care)["DomainName"] == world.care
    created = client.create_profile(DomainName=world.care, FirstName="Ada")
    assert client.search_profiles(
        DomainName=world.care, KeyName="_profileId", Values=[created["ProfileId"]]
    )["Items"]

    error = _denied(lambda: client.get_domain(DomainName=world.sales))
    assert error["Message"] == (
        f"User: {world.key[0]} is not authorized to perform: profile:GetDomain on resource: "
        f"{world.arn(world.sales)} because the access key is limited to other domains"
    )
    _denied(lambda: client.create_profile(DomainName=world.sales, FirstName="Ada"))
    _denied(lambda: client.search_profiles(DomainName=world.sales, KeyName="_phone", Values=["1"]))
    _denied(lambda: client.delete_domain(DomainName=world.sales))
    # MergeProfiles does not declare AccessDeniedException; botocore reads its code all the same.
    _denied(
        lambda: client.merge_profiles(
            DomainName=world.sales, MainProfileId="a" * 32, ProfileIdsToBeMerged=["b" * 32]
        )
    )
    # Nothing of it was done: the domain is still there.
    assert world.server.client().get_domain(DomainName=world.sales)["DomainName"] == world.sales


def test_create_domain_only_for_a_name_in_the_scope(world: World) -> None:
    _denied(lambda: world.client.create_domain(DomainName="elsewhere", DefaultExpirationDays=3))
    made = world.client.create_domain(DomainName=world.future, DefaultExpirationDays=3)
    assert made["DomainName"] == world.future


def test_list_domains_shows_only_the_scope(world: World) -> None:
    listed = {d["DomainName"] for d in world.client.list_domains(MaxResults=100)["Items"]}
    assert listed == {world.care}
    everything = {d["DomainName"] for d in world.server.client().list_domains()["Items"]}
    assert {world.care, world.sales} <= everything
    # Pages of one keep to the scope too.
    world.client.create_domain(DomainName=world.future, DefaultExpirationDays=3)
    first = world.client.list_domains(MaxResults=1)
    second = world.client.list_domains(MaxResults=1, NextToken=first["NextToken"])
    assert [d["DomainName"] for d in first["Items"] + second["Items"]] == sorted(
        [world.care, world.future]
    )
    assert "NextToken" not in second


def test_list_account_integrations_shows_only_the_scope(world: World) -> None:
    assert world.client.list_account_integrations(Uri=world.sales_instance)["Items"] == []
    [mine] = world.client.list_account_integrations(Uri=world.care_instance)["Items"]
    assert mine["DomainName"] == world.care
    [theirs] = world.server.client().list_account_integrations(Uri=world.sales_instance)["Items"]
    assert theirs["DomainName"] == world.sales


def test_tags_by_the_domain_their_arn_names(world: World) -> None:
    world.client.tag_resource(resourceArn=world.arn(world.care), tags={"team": "care"})
    assert world.client.list_tags_for_resource(resourceArn=world.arn(world.care))["tags"] == {
        "team": "care"
    }
    _denied(lambda: world.client.tag_resource(resourceArn=world.arn(world.sales), tags={"a": "b"}))
    _denied(lambda: world.client.untag_resource(resourceArn=world.arn(world.sales), tagKeys=["a"]))
    _denied(lambda: world.client.list_tags_for_resource(resourceArn=world.arn(world.sales)))


def test_the_built_in_catalogue_is_open_to_a_scoped_key(world: World) -> None:
    assert world.client.list_profile_object_type_templates()["Items"]


def test_refused_before_the_body_is_parsed(world: World) -> None:
    """A body that is not JSON at all: in the scope it is a BadRequest (parsed); outside it,
    refused before anyone reads it."""
    outside = world.post(f"/domains/{world.sales}/profiles", b'{"FirstName": ')
    assert outside.status_code == 403
    assert outside.headers["x-amzn-ErrorType"] == "AccessDeniedException"
    inside = world.post(f"/domains/{world.care}/profiles", b'{"FirstName": ')
    assert inside.status_code == 400
    assert inside.headers["x-amzn-ErrorType"] == "BadRequestException"


def test_refusals_are_in_the_audit_log_with_the_key_and_the_domain(
    world: World, audit_lines: Callable[[], list[str]]
) -> None:
    _denied(lambda: world.client.get_domain(DomainName=world.sales))
    _denied(lambda: world.client.delete_domain(DomainName=world.sales))
    lines = audit_lines()
    key = world.key[0]
    expected = f"domain={world.sales} caller={key} status=403 error=AccessDeniedException"
    # One line a refusal: the API's own for a request that may change state, the scope's for
    # a read (which the API does not log).
    assert lines.count(f"api DeleteDomain {expected} profile=-") == 1
    assert lines.count(f"api GetDomain {expected} profile=-") == 1
    assert not any(world.key[1] in line for line in lines)


def _records(world: World, body: list[dict[str, Any]]) -> dict[str, Any]:
    response = world.post("/contact-records", json.dumps(body).encode())
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def _unrouted(server: LiveServer, instance: str) -> int:
    with server.services.read() as tx:
        return sum(count_unrouted(tx, instance_arn=instance).values())


def test_contact_records_for_another_domain_are_rejected_one_by_one(
    world: World, audit_lines: Callable[[], list[str]]
) -> None:
    nowhere = _instance()
    answer = _records(
        world,
        [
            ctr("mine", instance=world.care_instance, address="+12065550111"),
            ctr("theirs", instance=world.sales_instance, address="+12065550112"),
            ctr("unassociated", instance=nowhere, address="+12065550113"),
            {"ContactId": "broken", "InstanceARN": world.sales_instance},
        ],
    )
    assert answer["Accepted"] == 1
    reasons = {r["ContactId"]: r["Message"] for r in answer["Rejected"]}
    assert set(reasons) == {"theirs", "unassociated", "broken"}
    # The key named an instance only: neither the other domain nor whether there is one.
    assert reasons == dict.fromkeys(["theirs", "unassociated", "broken"], _feed_refusal(world))
    admin = world.server.client()
    assert admin.search_profiles(DomainName=world.care, KeyName="_ctrContactId", Values=["mine"])[
        "Items"
    ]
    assert not admin.search_profiles(
        DomainName=world.sales, KeyName="_ctrContactId", Values=["theirs"]
    )["Items"]
    # Neither dead-lettered in the other domain nor kept for the instance's next domain.
    with world.server.services.read() as tx:
        assert dead_letters(tx, domain_name=world.sales) == 0
    assert _unrouted(world.server, nowhere) == 0
    # One audit line per domain refused in the body, naming the key.
    refused = [line for line in audit_lines() if line.startswith("api PostContactRecords")]
    assert sorted(refused) == sorted(
        [
            f"api PostContactRecords domain={world.sales} caller={world.key[0]} status=403 "
            "error=AccessDeniedException profile=-",
            f"api PostContactRecords domain=- caller={world.key[0]} status=403 "
            "error=AccessDeniedException profile=-",
        ]
    )


def test_a_refusal_is_in_the_audit_log_once_when_its_batch_runs_again(
    world: World, audit_lines: Callable[[], list[str]]
) -> None:
    """The batch's transaction loses a race once after the refusal was decided and runs again
    (store.conflicts.retrying): the refusal's line is written once, after the commit. It was
    written on each attempt."""
    engine = world.server.services.database.engine
    lost: list[str] = []

    def lose_the_first_write(*args: Any) -> None:
        statement = args[2]
        if not lost and statement.lstrip().upper().startswith(("INSERT", "UPDATE")):
            lost.append(statement)
            raise ConcurrentChange("a concurrent writer got there first (test)")

    event.listen(engine, "before_cursor_execute", lose_the_first_write)
    try:
        answer = _records(
            world,
            [
                ctr("theirs", instance=world.sales_instance, address="+12065550131"),
                ctr("mine", instance=world.care_instance, address="+12065550132"),
            ],
        )
    finally:
        event.remove(engine, "before_cursor_execute", lose_the_first_write)
    assert lost, "no write lost its race: the test did not run the batch twice"
    assert answer["Accepted"] == 1
    assert [r["ContactId"] for r in answer["Rejected"]] == ["theirs"]
    refused = [line for line in audit_lines() if line.startswith("api PostContactRecords")]
    assert refused == [
        f"api PostContactRecords domain={world.sales} caller={world.key[0]} status=403 "
        "error=AccessDeniedException profile=-"
    ]


def test_a_moved_instance_s_update_going_back_to_another_domain_is_rejected(
    world: World,
) -> None:
    """An instance moved from sales to care: a contact applied in sales before the move is
    updated there (contacts.moves), so a key for care may not send that update; a new contact
    of the instance goes to care, and is taken."""
    moving = _instance()
    admin = world.server.client()
    admin.put_integration(DomainName=world.sales, Uri=moving)
    # The contact applied in sales before the move, with the admin's unscoped key.
    _admin_records(world.server, [ctr("old", instance=moving, address="+12065550121")])
    with world.server.services.write() as tx:
        connect_instance(tx, domain_name=world.care, instance_arn=moving, move=True)
    answer = _records(
        world,
        [
            ctr(
                "old",
                instance=moving,
                address="+12065550121",
                last_update="2022-04-08T16:00:00Z",
            ),
            ctr("new", instance=moving, address="+12065550122"),
        ],
    )
    assert answer["Accepted"] == 1
    [rejected] = answer["Rejected"]
    assert rejected["ContactId"] == "old"
    assert rejected["Message"] == _feed_refusal(world)


def _admin_records(server: LiveServer, body: list[dict[str, Any]]) -> None:
    request = AWSRequest(
        method="POST",
        url=server.url + "/contact-records",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    SigV4Auth(Credentials(*server.admin_key), "profile", server.settings.region).add_auth(request)
    response = httpx.post(
        request.url, content=request.body, headers=dict(request.headers.items()), timeout=10
    )
    assert response.json()["Accepted"] == len(body), response.text


def test_a_contact_event_for_another_domain_is_refused(world: World) -> None:
    event = {
        "ContactId": f"live-{uuid.uuid4().hex[:6]}",
        "InitiationTimestamp": "2022-04-08T14:59:38Z",
        "Channel": "VOICE",
        "CustomerEndpoint": {"Address": "+12065550131", "Type": "TELEPHONE_NUMBER"},
    }
    theirs = world.post(
        "/contact-events", json.dumps(event | {"InstanceARN": world.sales_instance}).encode()
    )
    assert theirs.status_code == 403
    assert theirs.headers["x-amzn-ErrorType"] == "AccessDeniedException"
    assert theirs.json()["Message"] == _feed_refusal(world)
    # An instance associated with no domain: refused alike, not told it has none (400).
    nowhere = world.post(
        "/contact-events", json.dumps(event | {"InstanceARN": _instance()}).encode()
    )
    assert nowhere.status_code == 403
    assert nowhere.json()["Message"] == _feed_refusal(world)
    mine = world.post(
        "/contact-events", json.dumps(event | {"InstanceARN": world.care_instance}).encode()
    )
    assert mine.status_code == 200, mine.text
    assert mine.json()["DomainName"] == world.care


def test_put_integration_of_another_domain_s_instance_does_not_name_it(world: World) -> None:
    """An instance associated with a domain outside the key's scope: refused as for any key,
    but without the name of that domain, which the key may not learn; a key that may act on
    it (here, unscoped) is told which domain holds the instance, as before."""
    with pytest.raises(ClientError) as raised:
        world.client.put_integration(DomainName=world.care, Uri=world.sales_instance)
    error = raised.value.response["Error"]
    assert error["Code"] == "BadRequestException"
    assert error["Message"] == (
        f"The instance {world.sales_instance} is already associated with a domain this access "
        "key may not act on; an instance belongs to one domain at a time."
    )
    assert world.sales not in error["Message"]
    with pytest.raises(ClientError) as unscoped:
        world.server.client().put_integration(DomainName=world.care, Uri=world.sales_instance)
    assert unscoped.value.response["Error"]["Message"].startswith(
        f"The instance {world.sales_instance} is already associated with domain {world.sales}; "
    )
    # Nothing moved: the instance is still the other domain's.
    [theirs] = world.server.client().list_account_integrations(Uri=world.sales_instance)["Items"]
    assert theirs["DomainName"] == world.sales


def test_put_integration_names_a_domain_of_the_scope_holding_the_instance(
    world: World,
) -> None:
    """The domain holding the instance is one the key may act on: it is named."""
    admin = world.server.client()
    admin.create_domain(DomainName=world.future, DefaultExpirationDays=3)
    held = _instance()
    admin.put_integration(DomainName=world.future, Uri=held)
    with pytest.raises(ClientError) as raised:
        world.client.put_integration(DomainName=world.care, Uri=held)
    assert raised.value.response["Error"]["Message"].startswith(
        f"The instance {held} is already associated with domain {world.future}; "
    )


def test_refused_tag_operations_name_the_arn_s_domain_in_the_audit_log(
    world: World, audit_lines: Callable[[], list[str]]
) -> None:
    _denied(lambda: world.client.tag_resource(resourceArn=world.arn(world.sales), tags={"a": "b"}))
    _denied(lambda: world.client.untag_resource(resourceArn=world.arn(world.sales), tagKeys=["a"]))
    _denied(lambda: world.client.list_tags_for_resource(resourceArn=world.arn(world.sales)))
    expected = f"domain={world.sales} caller={world.key[0]} status=403 error=AccessDeniedException"
    lines = audit_lines()
    for operation in ("TagResource", "UntagResource", "ListTagsForResource"):
        assert lines.count(f"api {operation} {expected} profile=-") == 1, (operation, lines)
