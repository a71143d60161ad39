"""`run_due_flows` takes each domain's flows, and each flow, on their own: one domain whose key
cannot be used (disabled, KMS refusing) used to raise out of the pass, so every flow listed after
it — other tenants' — never ran while that key stayed unusable (a review's reproduction: the
domain's AccessDenied escaped `pending_items`, and `flows watch` exited). Now that domain is
logged by name and error code and passed over; a flow that cannot start once listed is recorded
as a FAILED run (a Scheduled flow at each due time, an Event flow once while it keeps failing).

The KMS cases go through tests.support.kms_proxy: moto does not refuse Decrypt under a disabled
key, the proxy answers DisabledException at the call the test chooses (the key disabled between
the listing of a domain's flows and the start of one)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from tests.support.kms_proxy import KmsProxy, kms_proxy
from tests.unit.integrations.integ_helpers import make_domain

from openprofiles.app import build_services
from openprofiles.context import Services
from openprofiles.crypto.keyring import Keyring
from openprofiles.flows.runs import UNSEALED_ERROR, list_runs
from openprofiles.flows.service import run_due_flows
from openprofiles.integrations.service import put_integration
from openprofiles.profiles.service import SearchCriterion, search_profiles
from openprofiles.settings import Settings

from .test_flows_failed_items import jsonl, user
from .test_flows_templates import flow_definition

TYPE = "Zendesk-users"
EVENT = {"TriggerType": "Event"}
HOURLY = {
    "TriggerType": "Scheduled",
    "TriggerProperties": {"Scheduled": {"ScheduleExpression": "rate(1 hours)"}},
}
# Named so the listing (by domain name) takes the failing domain first.
FAILING, OTHER = "a-tenant", "b-tenant"


def put_flow(
    services: Services, domain: str, folder: Path, trigger: dict[str, Any], *users: int
) -> None:
    folder.mkdir(exist_ok=True)
    (folder / f"users-{'-'.join(map(str, users))}.jsonl").write_text(jsonl(*map(user, users)))
    with services.write() as tx:
        put_integration(
            tx,
            domain_name=domain,
            uri=None,
            object_type_name=TYPE,
            flow_definition=flow_definition(f"crm-{domain}", "file://", str(folder), trigger),
        )


def ingested(services: Services, domain: str, n: int) -> bool:
    with services.read() as tx:
        criteria = [SearchCriterion("_zendeskUserId", (str(n),))]
        return bool(search_profiles(tx, domain_name=domain, criteria=criteria)[0])


def summary(services: Services, domain: str) -> list[tuple[str, str, str | None]]:
    """The flow's runs, oldest first: (trigger, status, error)."""
    with services.read() as tx:
        runs = list_runs(tx, domain_name=domain, flow_name=f"crm-{domain}")
    return [(r.trigger, r.status, r.error) for r in reversed(runs)]


def test_a_domain_whose_key_is_disabled_stops_no_other_domain_s_flows(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # No cache: the disabled key is felt at once, as it is once a cached data key expires.
    services = build_services(replace(settings, data_key_cache_seconds=0))
    try:
        keyring = Keyring(settings.keyring_path)
        key = keyring.create_key("tenant-a")
        make_domain(services, FAILING, key.arn(settings.region, settings.account_id))
        make_domain(services, OTHER)
        put_flow(services, FAILING, tmp_path / "a", EVENT, 1)
        put_flow(services, OTHER, tmp_path / "b", EVENT, 2)
        keyring.disable(key.key_id)

        with caplog.at_level(logging.WARNING, logger="openprofiles.flows"):
            runs = run_due_flows(services, now=datetime.now(UTC))

        assert [(r.domain_name, r.status) for r in runs] == [(OTHER, "COMPLETED")]
        assert ingested(services, OTHER, 2)
        # The domain and the error code, nothing of its records or its files.
        [line] = [r.getMessage() for r in caplog.records if FAILING in r.getMessage()]
        assert "AccessDeniedException" in line
        assert "users-1" not in caplog.text and "u1@example.com" not in caplog.text

        keyring.enable(key.key_id)
        [run] = run_due_flows(services, now=datetime.now(UTC))
        assert (run.domain_name, run.status) == (FAILING, "COMPLETED")
        assert ingested(services, FAILING, 1)
    finally:
        services.database.dispose()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fake credentials for moto, and no chance of reading the developer's real AWS config."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


@pytest.fixture
def on_kms(settings: Settings, moto_url: str, aws_env: None) -> Iterator[tuple[Services, KmsProxy]]:
    """Services whose FAILING domain is under a KMS key (through the proxy), the other under
    the local default key; no data-key cache, so each transaction unwraps again."""
    with kms_proxy(moto_url) as proxy:
        services = build_services(
            replace(
                settings,
                kms_endpoint_url=proxy.url,
                aws_region="us-east-1",
                data_key_cache_seconds=0,
            )
        )
        try:
            kms = boto3.client("kms", endpoint_url=proxy.url, region_name="us-east-1")
            make_domain(services, FAILING, kms.create_key()["KeyMetadata"]["Arn"])
            make_domain(services, OTHER)
            yield services, proxy
        finally:
            services.database.dispose()


@pytest.mark.moto
def test_a_scheduled_flow_that_cannot_start_is_a_failed_run_and_the_others_run(
    on_kms: tuple[Services, KmsProxy], tmp_path: Path
) -> None:
    services, proxy = on_kms
    put_flow(services, FAILING, tmp_path / "a", HOURLY, 1)
    put_flow(services, OTHER, tmp_path / "b", HOURLY, 2)
    now = datetime.now(UTC)
    # The key disabled once the domain's flows are listed: run_flow cannot open the domain.
    proxy.refuse("Decrypt", "DisabledException", after=1)

    runs = run_due_flows(services, now=now)

    assert [(r.domain_name, r.status) for r in runs] == [(FAILING, "FAILED"), (OTHER, "COMPLETED")]
    assert "is disabled" in (runs[0].error or "")
    # Stored without a reason (the key that would seal it could not be used), and it counts as
    # the flow's scheduled run: the next is due an interval later.
    assert summary(services, FAILING) == [("Scheduled", "FAILED", UNSEALED_ERROR)]
    assert run_due_flows(services, now=now + timedelta(minutes=1)) == []
    later = run_due_flows(services, now=now + timedelta(hours=2))
    assert [(r.domain_name, r.status) for r in later] == [
        (FAILING, "COMPLETED"),
        (OTHER, "COMPLETED"),
    ]
    assert ingested(services, FAILING, 1) and ingested(services, OTHER, 2)


@pytest.mark.moto
def test_an_event_flow_that_cannot_start_is_one_failed_run_while_it_keeps_failing(
    on_kms: tuple[Services, KmsProxy], tmp_path: Path
) -> None:
    services, proxy = on_kms
    put_flow(services, FAILING, tmp_path / "a", EVENT, 1)
    put_flow(services, OTHER, tmp_path / "b", EVENT, 2)
    # Listed, then its checkpoints cannot be read (pending_items): twice in a row.
    proxy.refuse("Decrypt", "DisabledException", after=1)
    runs = run_due_flows(services, now=datetime.now(UTC))
    assert [(r.domain_name, r.status) for r in runs] == [(FAILING, "FAILED"), (OTHER, "COMPLETED")]
    proxy.refuse("Decrypt", "DisabledException", after=1)
    assert run_due_flows(services, now=datetime.now(UTC)) == []
    assert summary(services, FAILING) == [("Event", "FAILED", UNSEALED_ERROR)]

    [run] = run_due_flows(services, now=datetime.now(UTC))
    assert (run.domain_name, run.status) == (FAILING, "COMPLETED")
    assert [status for _, status, _ in summary(services, FAILING)] == ["FAILED", "COMPLETED"]
    assert ingested(services, FAILING, 1) and ingested(services, OTHER, 2)
