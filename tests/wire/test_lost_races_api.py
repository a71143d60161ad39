"""What a caller sees when the database fails a write: a request that lost a race with another
transaction (PostgreSQL: a deadlock) runs again and succeeds; a failure no new attempt cures is
an AWS-format InternalServerException, on the API and on the contact feeds alike.

The failures are made by the database itself: a trigger that raises the deadlock's SQLSTATE the
first time (a sequence counts the attempts, outside the rolled-back transaction), or on every
insert."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from sqlalchemy import text

INSTANCE = "arn:aws:connect:us-east-1:111122223333:instance/00000000-0000-4000-8000-00000000race"


def _client(live_server: Any) -> Any:
    """A client that sends each request once: the server's retry is what is under test."""
    return boto3.client(
        "customer-profiles",
        endpoint_url=live_server.url,
        region_name=live_server.settings.region,
        aws_access_key_id=live_server.admin_key[0],
        aws_secret_access_key=live_server.admin_key[1],
        config=Config(retries={"total_max_attempts": 1}),
    )


def _ddl(live_server: Any, *statements: str) -> None:
    with live_server.services.write() as tx:
        for statement in statements:
            tx.conn.execute(text(statement))


def _scalar(live_server: Any, query: str) -> Any:
    with live_server.services.read() as tx:
        return tx.conn.execute(text(query)).scalar()


@pytest.fixture
def domain(live_server: Any) -> str:
    name = f"r-{uuid.uuid4().hex[:10]}"
    live_server.client().create_domain(DomainName=name, DefaultExpirationDays=30)
    return name


@pytest.fixture
def failing_profile_inserts(live_server: Any) -> Iterator[None]:
    """Every insert of a profile fails with an error no retry cures."""
    # A name of its own each time: a pooled SQLite connection checks a CREATE against the schema
    # it read last, and could still see the trigger a previous test dropped.
    name = f"fail_{uuid.uuid4().hex[:8]}"
    if live_server.services.database.is_sqlite:
        _ddl(
            live_server,
            f"CREATE TRIGGER {name} BEFORE INSERT ON profile "
            "BEGIN SELECT RAISE(ABORT, 'the disk is on fire'); END",
        )
        yield
        _ddl(live_server, f"DROP TRIGGER {name}")
        return
    _ddl(
        live_server,
        f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "RAISE EXCEPTION 'the disk is on fire' USING ERRCODE = 'XX000'; END $$",
        f"CREATE TRIGGER {name} BEFORE INSERT ON profile FOR EACH ROW EXECUTE FUNCTION {name}()",
    )
    yield
    _ddl(live_server, f"DROP TRIGGER {name} ON profile", f"DROP FUNCTION {name}()")


@pytest.mark.parametrize("live_server", ["postgres"], indirect=True)
def test_a_request_that_lost_a_race_runs_again_and_succeeds(live_server: Any, domain: str) -> None:
    _ddl(
        live_server,
        "CREATE SEQUENCE profile_attempts",
        "CREATE FUNCTION deadlock_once() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF nextval('profile_attempts') = 1 THEN "
        "RAISE EXCEPTION 'deadlock detected (made by the test)' USING ERRCODE = '40P01'; "
        "END IF; RETURN NEW; END $$",
        "CREATE TRIGGER deadlock_once BEFORE INSERT ON profile "
        "FOR EACH ROW EXECUTE FUNCTION deadlock_once()",
    )
    try:
        client = _client(live_server)
        created = client.create_profile(DomainName=domain, FirstName="Ada", AccountNumber="a-1")
        found = client.search_profiles(DomainName=domain, KeyName="_account", Values=["a-1"])
        assert [p["ProfileId"] for p in found["Items"]] == [created["ProfileId"]]
        # The first attempt was rolled back by the deadlock, the second applied.
        assert _scalar(live_server, "SELECT last_value FROM profile_attempts") == 2
    finally:
        _ddl(
            live_server,
            "DROP TRIGGER deadlock_once ON profile",
            "DROP FUNCTION deadlock_once()",
            "DROP SEQUENCE profile_attempts",
        )


@pytest.mark.usefixtures("failing_profile_inserts")
def test_a_failure_no_attempt_cures_is_an_aws_internal_error(live_server: Any, domain: str) -> None:
    with pytest.raises(ClientError) as exc:
        _client(live_server).create_profile(DomainName=domain, FirstName="Ada")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert exc.value.response["Error"]["Code"] == "InternalServerException"
    assert "disk is on fire" not in exc.value.response["Error"]["Message"]


def _post(live_server: Any, path: str, payload: Any) -> httpx.Response:
    body = json.dumps(payload).encode()
    request = AWSRequest(
        method="POST",
        url=f"{live_server.url}{path}",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    SigV4Auth(Credentials(*live_server.admin_key), "profile", live_server.settings.region).add_auth(
        request
    )
    return httpx.post(request.url, content=body, headers=dict(request.headers.items()))


@pytest.mark.usefixtures("failing_profile_inserts")
def test_the_contact_feeds_answer_a_database_failure_in_the_aws_format(
    live_server: Any, domain: str
) -> None:
    live_server.client().put_integration(DomainName=domain, Uri=INSTANCE)
    record = {
        "AWSContactTraceRecordFormatVersion": "2017-03-10",
        "ContactId": f"c-{uuid.uuid4().hex[:8]}",
        "InstanceARN": INSTANCE,
        "Channel": "VOICE",
        "InitiationTimestamp": "2024-03-01T10:00:00Z",
        "LastUpdateTimestamp": "2024-03-01T10:05:00Z",
        "CustomerEndpoint": {"Address": "+12065550100", "Type": "TELEPHONE_NUMBER"},
    }
    event = {
        key: record[key]
        for key in (
            "ContactId",
            "InitiationTimestamp",
            "Channel",
            "InstanceARN",
            "CustomerEndpoint",
        )
    }
    for path, payload in (("/contact-records", [record]), ("/contact-events", event)):
        response = _post(live_server, path, payload)
        assert response.status_code == 500, (path, response.text)
        assert response.headers["x-amzn-ErrorType"] == "InternalServerException"
        assert response.json()["Message"].startswith("An internal error occurred")
        assert response.headers["x-amzn-RequestId"] in response.json()["Message"]


@pytest.mark.parametrize("live_server", ["postgres"], indirect=True)
def test_a_connection_lost_while_committing_is_not_run_again(live_server: Any, domain: str) -> None:
    """The commit may have been applied: running the request again could apply it twice
    (a second profile). A deferred trigger ends the server's own connection during COMMIT."""
    _ddl(
        live_server,
        "CREATE SEQUENCE commit_attempts",
        "CREATE FUNCTION drop_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "PERFORM nextval('commit_attempts'); PERFORM pg_terminate_backend(pg_backend_pid()); "
        "RETURN NULL; END $$",
        "CREATE CONSTRAINT TRIGGER drop_at_commit AFTER INSERT ON profile "
        "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION drop_at_commit()",
    )
    try:
        with pytest.raises(ClientError) as exc:
            _client(live_server).create_profile(DomainName=domain, FirstName="Ada")
        assert exc.value.response["Error"]["Code"] == "InternalServerException"
        assert "may or may not have been applied" in exc.value.response["Error"]["Message"]
        assert _scalar(live_server, "SELECT last_value FROM commit_attempts") == 1
    finally:
        _ddl(
            live_server,
            "DROP TRIGGER drop_at_commit ON profile",
            "DROP FUNCTION drop_at_commit()",
            "DROP SEQUENCE commit_attempts",
        )
