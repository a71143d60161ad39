"""The pages' warning of a domain whose key cannot be used is written once a minute per domain and
message, the next one saying how many page requests were left out, as the API's is
(tests/unit/app/test_key_problem_log_rate.py).

The problem: the pages logged a line for every page request that met the key problem. During a
KMS outage, with every agent's every page of the domain meeting it, that flooded the log as the
API's warning once did. Through real page requests (Starlette's TestClient), on SQLite and
PostgreSQL: the domains' key is in moto's KMS behind tests.support.kms_proxy, which answers
KeyUnavailableException to every Decrypt while the outage lasts, with no data-key cache, so
every request asks the KMS; the window's clock is the test's.

A domain whose pages stop failing within the window has its count written at the next page
line of any domain, on a line of its own (it was written only if the same domain failed again,
so the tail of an outage went unreported)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace

import boto3
import pytest
from starlette.testclient import TestClient
from tests.support.kms_proxy import kms_proxy
from tests.unit.integrations.integ_helpers import make_domain
from tests.unit.ui.test_ui_private_urls import PASSWORD, sign_in

from openprofiles.app import create_app
from openprofiles.log_limits import KEY_PROBLEM_LOG_WINDOW_SECONDS, RepeatedLines
from openprofiles.profiles import service as profiles
from openprofiles.settings import Settings
from openprofiles.ui import web
from openprofiles.users import service as users
from openprofiles.wire import dispatch

DOMAINS = ("keyed-a", "keyed-b")


class Clock:
    """Monotonic seconds that move when the test says."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def fresh_key_problem_lines() -> None:
    """The process's limiters follow nothing from earlier tests, whatever their order."""
    dispatch._key_problem_lines.clear()
    web._key_problem_lines.clear()


@dataclass
class Setup:
    agent: TestClient
    # domain -> a profile of it
    profile_ids: dict[str, str]
    clock: Clock


@pytest.fixture
def setup(settings: Settings, moto_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Setup]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    clock = Clock()
    # This test's own lines and clock: the process's are left as they were.
    monkeypatch.setattr(
        web,
        "_key_problem_lines",
        RepeatedLines(KEY_PROBLEM_LOG_WINDOW_SECONDS, report=web._report_left_out, clock=clock),
    )
    with kms_proxy(moto_url) as proxy:
        keyed = replace(
            settings, kms_endpoint_url=proxy.url, aws_region="us-east-1", data_key_cache_seconds=0
        )
        kms = boto3.client("kms", endpoint_url=moto_url, region_name="us-east-1")
        key_arn = kms.create_key()["KeyMetadata"]["Arn"]
        app = create_app(keyed)
        profile_ids = {}
        for name in DOMAINS:
            # One key for both: the same message, told apart by the domain.
            make_domain(app.state.services, name, key_arn)
            with app.state.services.write() as tx:
                profile_ids[name] = profiles.create_profile(
                    tx, domain_name=name, fields={"FirstName": "Kofi"}
                ).profile_id
        with app.state.services.write() as tx:
            users.create_user(tx, username="agent1", password=PASSWORD, role="agent")
        agent = TestClient(app, follow_redirects=False)
        sign_in(agent, "agent1")
        # From now on the KMS answers that the key cannot be used now, to every Decrypt.
        proxy.refuse("Decrypt", "KeyUnavailableException", times=1_000_000)
        try:
            yield Setup(agent, profile_ids, clock)
        finally:
            agent.close()
            app.state.services.database.dispose()


def test_many_page_requests_meeting_the_key_problem_make_one_line_then_a_count(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=web.logger.name)

    def open_profile(domain: str, times: int) -> list[str]:
        """The profile page of `domain` opened `times` times; the warnings the pages logged."""
        caplog.clear()
        for _ in range(times):
            answer = setup.agent.get(
                f"/agent/domains/{domain}/profiles/{setup.profile_ids[domain]}"
            )
            assert answer.status_code == 503, answer.text
        return [
            r.getMessage()
            for r in caplog.records
            if r.name == web.logger.name and r.levelno == logging.WARNING
        ]

    first = open_profile("keyed-a", 20)
    other_domain = open_profile("keyed-b", 5)
    setup.clock.now += KEY_PROBLEM_LOG_WINDOW_SECONDS / 2
    within = open_profile("keyed-a", 3)
    setup.clock.now += KEY_PROBLEM_LOG_WINDOW_SECONDS / 2
    after = open_profile("keyed-a", 2)

    line = r"/agent/domains/%s/profiles/\S+ \(domain %s\): a domain's key cannot be used: .*"
    # The provider's message, as logging_setup describes the exception (create_app installs it).
    problem = "openprofiles.crypto.errors.KeyUnusable: The KMS key arn:aws:kms:"
    assert len(first) == 1, first
    assert re.fullmatch(line % ("keyed-a", "keyed-a"), first[0]), first
    assert problem in first[0] and "not logged" not in first[0]
    # Another domain's first is not left out for keyed-a's, though its message is the same.
    assert len(other_domain) == 1, other_domain
    assert re.fullmatch(line % ("keyed-b", "keyed-b"), other_domain[0]), other_domain
    assert within == []
    # keyed-b's pages failed no more: its window has passed, and its count (4) is written
    # before the next page line of any domain, on a line of its own.
    assert len(after) == 2, after
    assert re.fullmatch(r"pages \(domain keyed-b\): a domain's key cannot be used: .*", after[0])
    assert problem in after[0]
    assert after[0].endswith(
        "[4 more page requests of the domain met this in the 60 s after the last such line; "
        "not logged]"
    ), after
    # The first after the window says how many were left out (19 + 3), and opens a new one.
    assert re.fullmatch(line % ("keyed-a", "keyed-a"), after[1]), after
    assert problem in after[1]
    assert after[1].endswith(
        "[22 more page requests of the domain met this in the 60 s after the last such line; "
        "not logged]"
    ), after
