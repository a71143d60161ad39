"""The audit log of the API (openprofiles.audit, written by wire.dispatch): one line for each
request of an operation that may change state — who (the verified access key id), what (the
operation, the domain, the profile), and how it ended (the status, the error type) — with no
personal value; none for read-only operations. Both backends: on SQLite the profile operations
run on the event loop and share commits, on PostgreSQL in worker threads."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from tests.support.server import LiveServer

from openprofiles import audit

EMAIL = "ada.lovelace@example.com"
PHONE = "+14155550123"
NAME = "Lovelace"


@pytest.fixture
def audit_lines(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    """The audit lines written so far in the test (the server runs in this process)."""
    caplog.set_level(logging.INFO, logger=audit.logger.name)
    return lambda: [r.getMessage() for r in caplog.records if r.name == audit.logger.name]


def test_every_state_change_is_logged_once_without_personal_values(
    live_server: LiveServer, audit_lines: Callable[[], list[str]]
) -> None:
    admin = live_server.client("admin")
    agent = live_server.client("agent")
    admin_key, agent_key = live_server.admin_key[0], live_server.agent_key[0]
    domain = f"audit-{live_server.settings.port}"
    admin.create_domain(DomainName=domain, DefaultExpirationDays=30)
    created = agent.create_profile(
        DomainName=domain, EmailAddress=EMAIL, PhoneNumber=PHONE, LastName=NAME
    )
    profile_id = created["ProfileId"]
    agent.update_profile(DomainName=domain, ProfileId=profile_id, FirstName="Ada")
    # Read-only operations are not logged.
    agent.get_domain(DomainName=domain)
    agent.search_profiles(DomainName=domain, KeyName="_email", Values=[EMAIL])
    missing = "0" * 32
    with pytest.raises(ClientError):
        admin.delete_profile(DomainName=domain, ProfileId=missing)
    with pytest.raises(ClientError):
        agent.delete_domain(DomainName=domain)  # an admin's operation

    lines = audit_lines()
    assert lines == [
        f"api CreateDomain domain={domain} caller={admin_key} status=200 profile=-",
        f"api CreateProfile domain={domain} caller={agent_key} status=200 profile={profile_id}",
        f"api UpdateProfile domain={domain} caller={agent_key} status=200 profile={profile_id}",
        f"api DeleteProfile domain={domain} caller={admin_key} status=404 "
        f"error=ResourceNotFoundException profile={missing}",
        f"api DeleteDomain domain={domain} caller={agent_key} status=403 "
        "error=AccessDeniedException profile=-",
    ]
    text = "\n".join(lines)
    for personal in (EMAIL, PHONE, NAME, "Ada", "ada.lovelace"):
        assert personal not in text


def test_a_request_that_fails_before_its_handler_is_logged_too(
    live_server: LiveServer, audit_lines: Callable[[], list[str]]
) -> None:
    """A bad signature: no verified caller. A value the model refuses where the domain name
    goes is not written out (it could be anything), and neither is the body."""
    forger = boto3.client(
        "customer-profiles",
        endpoint_url=live_server.url,
        region_name=live_server.settings.region,
        aws_access_key_id=live_server.agent_key[0],
        aws_secret_access_key="not-the-secret",
        config=Config(retries={"max_attempts": 1}),
    )
    with pytest.raises(ClientError):
        forger.create_profile(DomainName="some-domain", EmailAddress=EMAIL)
    admin = live_server.client("admin", parameter_validation=False)
    with pytest.raises(ClientError):
        admin.create_profile(DomainName=PHONE, EmailAddress=EMAIL)

    lines = audit_lines()
    assert len(lines) == 2
    assert re.fullmatch(
        r"api CreateProfile domain=some-domain caller=- status=403 error=\w+ profile=-", lines[0]
    )
    assert re.fullmatch(
        rf"api CreateProfile domain=\(not valid\) caller={live_server.admin_key[0]} "
        r"status=400 error=\w+ profile=-",
        lines[1],
    )
    assert EMAIL not in "\n".join(lines) and PHONE not in "\n".join(lines)


def test_the_record_feed_is_not_logged_record_by_record(
    live_server: LiveServer, audit_lines: Callable[[], list[str]]
) -> None:
    """PutProfileObject is how applications stream records in: no line for each."""
    admin = live_server.client("admin")
    domain = f"feed-{live_server.settings.port}"
    admin.create_domain(DomainName=domain, DefaultExpirationDays=30)
    admin.put_profile_object_type(
        DomainName=domain,
        ObjectTypeName="Orders",
        Description="orders",
        Fields={
            "id": {"Source": "_source.id"},
            "email": {"Source": "_source.email", "Target": "_profile.EmailAddress"},
        },
        Keys={
            "orderId": [{"StandardIdentifiers": ["UNIQUE"], "FieldNames": ["id"]}],
            "_email": [{"StandardIdentifiers": ["PROFILE"], "FieldNames": ["email"]}],
        },
        AllowProfileCreation=True,
    )
    for n in range(3):
        admin.put_profile_object(
            DomainName=domain,
            ObjectTypeName="Orders",
            Object=f'{{"id": "{n}", "email": "o{n}@example.com"}}',
        )
    operations = [line.split()[1] for line in audit_lines()]
    assert operations == ["CreateDomain", "PutProfileObjectType"]
