"""The API's reads of customers' personal data in the audit log (OPENPROFILES_AUDIT_API_READS,
Settings.audit_api_reads; audit.PERSONAL_READS, decided by audit.audited): off by default, no
line for them; on, one line each in the API's form, through the same path as the changes
(wire.dispatch), while the reads of configuration and metadata still write none. A read
refused for a key's scope writes its one line either way. Both backends.

Before, no API read was ever logged: which key read a customer's data could not be told. A
read's line names the profiles its answer held (`answered=`): a search names no profile in its
input, and its values stay out of the log."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from tests.conftest import BACKENDS
from tests.support.backends import database_url_for
from tests.support.server import LiveServer, run_server

from openprofiles import audit
from openprofiles.auth.credentials import create_credential
from openprofiles.settings import Settings
from openprofiles.wire.model import load_service_model

EMAIL = "ada.lovelace@example.com"
NAME = "Lovelace"


@pytest.fixture(scope="module", params=BACKENDS)
def reads_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A live server with OPENPROFILES_AUDIT_API_READS on."""
    tmp: Path = tmp_path_factory.mktemp("server")
    with database_url_for(request.param, tmp) as url:
        settings = Settings(
            data_dir=tmp / "data",
            database_url=url,
            matching_schedule_check_seconds=0,
            audit_api_reads=True,
        )
        with run_server(settings) as server:
            yield server


@pytest.fixture
def audit_lines(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    """The audit lines written so far in the test (the server runs in this process)."""
    caplog.set_level(logging.INFO, logger=audit.logger.name)
    return lambda: [r.getMessage() for r in caplog.records if r.name == audit.logger.name]


def test_the_setting_is_read_from_the_environment_off_by_default() -> None:
    assert Settings().audit_api_reads is False
    assert Settings.from_env({}).audit_api_reads is False
    assert Settings.from_env({"OPENPROFILES_AUDIT_API_READS": "ON"}).audit_api_reads is True
    assert Settings.from_env({"OPENPROFILES_AUDIT_API_READS": "off"}).audit_api_reads is False
    with pytest.raises(ValueError, match="OPENPROFILES_AUDIT_API_READS must be on or off"):
        Settings.from_env({"OPENPROFILES_AUDIT_API_READS": "yes please"})


def test_the_personal_reads_are_model_reads() -> None:
    """A misspelt name would leave its operation unlogged without a word."""
    operations = set(load_service_model().operation_names)
    assert audit.PERSONAL_READS.issubset(operations)
    assert all(name.startswith(audit.READ_ONLY_PREFIXES) for name in audit.PERSONAL_READS)


def test_the_segment_attribute_value_and_recommendation_reads_are_personal() -> None:
    """Reads the model has that answer profiles' data (none implemented yet: a request of one
    is an attempt all the same). Their answers' profiles are named: a segment's members (not
    its Failures, the ids the caller named), and those who joined or left it."""
    assert {
        "GetSegmentMembership",
        "ListSegmentSubscriptionEvents",
        "ListObjectTypeAttributeValues",
        "GetProfileRecommendations",
        "SearchRecommendations",
    } <= audit.PERSONAL_READS
    member, failed = "a" * 32, "b" * 32
    membership = {
        "Profiles": [{"ProfileId": member, "Profile": {"ProfileId": member, "LastName": NAME}}],
        "Failures": [{"ProfileId": failed, "Status": 404}],
    }
    assert audit.profiles_answered(membership) == [member]
    events = {"Events": [{"ProfileId": failed, "EventType": "JOINED"}]}
    assert audit.profiles_answered(events) == [failed]


def test_with_the_setting_on_personal_reads_are_logged_and_metadata_reads_are_not(
    reads_server: LiveServer, audit_lines: Callable[[], list[str]]
) -> None:
    admin = reads_server.client("admin")
    agent = reads_server.client("agent")
    admin_key, agent_key = reads_server.admin_key[0], reads_server.agent_key[0]
    domain = f"reads-{reads_server.settings.port}"
    admin.create_domain(DomainName=domain, DefaultExpirationDays=30)
    created = agent.create_profile(DomainName=domain, EmailAddress=EMAIL, LastName=NAME)
    profile_id = created["ProfileId"]
    # Configuration and metadata: never logged.
    agent.get_domain(DomainName=domain)
    agent.list_domains()
    agent.list_profile_object_types(DomainName=domain)
    # Personal data: one line each, no value.
    found = agent.search_profiles(DomainName=domain, KeyName="_email", Values=[EMAIL])
    assert [p["ProfileId"] for p in found["Items"]] == [profile_id]
    # The profiles each answer held, not those it could not find (BatchGetProfile's Errors).
    absent = "f" * 32
    agent.batch_get_profile(DomainName=domain, ProfileIds=[absent, profile_id])
    agent.search_profiles(DomainName=domain, KeyName="_email", Values=["nobody@example.com"])

    lines = audit_lines()
    assert lines == [
        f"api CreateDomain domain={domain} caller={admin_key} status=200 profile=-",
        f"api CreateProfile domain={domain} caller={agent_key} status=200 profile={profile_id}",
        f"api SearchProfiles domain={domain} caller={agent_key} status=200 profile=- "
        f"answered={profile_id}",
        f"api BatchGetProfile domain={domain} caller={agent_key} status=200 profile=- "
        f"answered={profile_id}",
        f"api SearchProfiles domain={domain} caller={agent_key} status=200 profile=- answered=-",
    ]
    assert EMAIL not in "\n".join(lines) and NAME not in "\n".join(lines)


def test_the_profiles_an_answer_held_are_read_from_each_reads_shape() -> None:
    """SearchProfiles' Items, BatchGetProfile's Profiles (not its Errors), GetMatches' Matches
    and GetSimilarProfiles' ProfileIds: each id once, in the answer's order; a value not of a
    profile id's form is left out, as the audit line writes only ids."""
    a, b, c = "a" * 32, "b" * 32, "c" * 32
    assert audit.profiles_answered({"Items": [{"ProfileId": a}, {"ProfileId": b}]}) == [a, b]
    assert audit.profiles_answered(
        {"Profiles": [{"ProfileId": b}], "Errors": [{"ProfileId": c, "Code": "404"}]}
    ) == [b]
    assert audit.profiles_answered(
        {"Matches": [{"MatchId": "m1", "ProfileIds": [a, b]}, {"ProfileIds": [b, c]}]}
    ) == [a, b, c]
    assert audit.profiles_answered({"ProfileIds": [c, "ann@example.org"], "MatchId": "x"}) == [c]
    assert audit.profiles_answered({"Items": [], "NextToken": "t"}) == []


def test_a_read_refused_for_the_keys_scope_is_logged_once(
    reads_server: LiveServer, audit_lines: Callable[[], list[str]]
) -> None:
    """Refused before its handler (auth.scope): the line the read gets anyway, not a second
    one for the refusal."""
    domain = f"other-{reads_server.settings.port}"
    reads_server.client("admin").create_domain(DomainName=domain, DefaultExpirationDays=30)
    with reads_server.services.write() as tx:
        scoped = create_credential(tx, role="agent", domains=["elsewhere"])
    scoped_client = boto3.client(
        "customer-profiles",
        endpoint_url=reads_server.url,
        region_name=reads_server.settings.region,
        aws_access_key_id=scoped.access_key_id,
        aws_secret_access_key=scoped.secret_access_key,
        config=Config(retries={"max_attempts": 1}),
    )
    with pytest.raises(ClientError):
        scoped_client.search_profiles(DomainName=domain, KeyName="_email", Values=[EMAIL])
    assert audit_lines()[1:] == [
        f"api SearchProfiles domain={domain} caller={scoped.access_key_id} status=403 "
        "error=AccessDeniedException profile=-",
    ]


def test_with_the_setting_off_reads_write_no_line(
    live_server: LiveServer, audit_lines: Callable[[], list[str]]
) -> None:
    """The default (the shared live server's settings): the changes are logged, the reads not.
    A guard of the default, which the old code had too."""
    assert live_server.settings.audit_api_reads is False
    agent = live_server.client("agent")
    domain = f"quiet-{live_server.settings.port}"
    live_server.client("admin").create_domain(DomainName=domain, DefaultExpirationDays=30)
    profile_id = agent.create_profile(DomainName=domain, EmailAddress=EMAIL)["ProfileId"]
    agent.search_profiles(DomainName=domain, KeyName="_email", Values=[EMAIL])
    agent.batch_get_profile(DomainName=domain, ProfileIds=[profile_id])
    assert [line.split()[1] for line in audit_lines()] == ["CreateDomain", "CreateProfile"]
