"""UpdateDomain's change of DefaultEncryptionKey against a DeleteDomain and a CreateDomain of the
same name, and CreateDomain of a name taken.

UpdateDomain reads the domain, re-wraps its data key under the new key outside any transaction
(a KMS call), then writes. A DeleteDomain and a CreateDomain of the name in between used to get
the deleted domain's data key written into the new domain's row: the new domain's own data
could never be read again. Now the write is made only while the row holds the domain and the
wrapped key that were re-wrapped; otherwise the request runs again, against the new domain.

The KMS call is held in flight through tests.support.kms_proxy (moto behind it), so "the
re-wrap is under way" is a state the test controls; the handlers run in this process, as the
server runs them (store.conflicts.retrying around each request).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import pytest
from tests.support.kms_proxy import KmsProxy, kms_proxy

from openprofiles.app import build_services
from openprofiles.context import Principal, RequestContext, Services
from openprofiles.domains import handlers
from openprofiles.domains.service import get_domain
from openprofiles.errors import BadRequest
from openprofiles.profiles import handlers as profiles
from openprofiles.settings import Settings
from openprofiles.store.conflicts import retrying

D = "recreated"
# A bound on waits that end at once when the code is right; not a synchronisation delay.
WAIT_SECONDS = 30


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
def on_kms(
    settings: Settings, moto_url: str, aws_env: None
) -> Iterator[tuple[Settings, Services, KmsProxy]]:
    with kms_proxy(moto_url) as proxy:
        on_proxy = replace(settings, kms_endpoint_url=proxy.url, aws_region="us-east-1")
        services = build_services(on_proxy)
        try:
            yield on_proxy, services, proxy
        finally:
            services.database.dispose()


def request(services: Services, handler: Any, params: dict[str, Any]) -> dict[str, Any]:
    """`handler` as the server runs it (app.invoke): run again after a lost race."""
    ctx = RequestContext(services=services, principal=Principal("test", "admin"))

    def attempt() -> dict[str, Any]:
        ctx.committed_writes = 0
        answer: dict[str, Any] = handler(ctx, params)
        return answer

    return retrying(attempt, may_retry=lambda: ctx.committed_writes == 0)


@pytest.mark.moto
def test_a_key_change_meeting_a_recreated_domain_leaves_the_new_domain_readable(
    on_kms: tuple[Settings, Services, KmsProxy],
) -> None:
    settings, services, proxy = on_kms
    kms = boto3.client("kms", endpoint_url=proxy.url, region_name="us-east-1")
    first, second = (kms.create_key()["KeyMetadata"]["Arn"] for _ in range(2))
    request(
        services,
        handlers.create_domain,
        {"DomainName": D, "DefaultExpirationDays": 5, "DefaultEncryptionKey": first},
    )
    # The re-wrap's Encrypt under the new key waits, once it has arrived, for the test.
    held = proxy.hold("Encrypt")
    outcome: dict[str, Any] = {}

    def change_key() -> None:
        try:
            outcome["answer"] = request(
                services, handlers.update_domain, {"DomainName": D, "DefaultEncryptionKey": second}
            )
        except Exception as exc:  # reported by the assertions below
            outcome["error"] = exc

    thread = threading.Thread(target=change_key)
    thread.start()
    try:
        assert held.reached.wait(WAIT_SECONDS), "UpdateDomain never re-wrapped the data key"
        request(services, handlers.delete_domain, {"DomainName": D})
        request(services, handlers.create_domain, {"DomainName": D, "DefaultExpirationDays": 5})
        profile_id = request(
            services, profiles.create_profile, {"DomainName": D, "FirstName": "New"}
        )["ProfileId"]
    finally:
        held.release.set()
        thread.join(WAIT_SECONDS)
    assert not thread.is_alive()

    assert "error" not in outcome, outcome
    assert outcome["answer"]["DefaultEncryptionKey"] == second
    # A new process (no data key cached) reads the new domain's profile: its row holds the new
    # domain's own data key, now wrapped under the key asked for.
    fresh = build_services(replace(settings, data_key_cache_seconds=0))
    try:
        with fresh.read() as tx:
            assert get_domain(tx, domain_name=D).key_id == second
        found = request(
            fresh,
            profiles.search_profiles,
            {"DomainName": D, "KeyName": "_profileId", "Values": [profile_id]},
        )
        assert [item["FirstName"] for item in found["Items"]] == ["New"]
    finally:
        fresh.database.dispose()


def test_create_domain_of_a_name_taken_says_so_before_anything_else(services: Services) -> None:
    """Not the queue's or the key's verdict, which were reached by a test message to the queue
    and a new data key (a KMS call for a KMS key) made for nothing."""
    request(services, handlers.create_domain, {"DomainName": D, "DefaultExpirationDays": 5})
    for refused in (
        {"DeadLetterQueueUrl": "https://sqs.us-east-1.amazonaws.com/not-a-queue"},
        {"DefaultEncryptionKey": "alias/no-such-key"},
    ):
        with pytest.raises(BadRequest, match=f"A domain named {D} already exists"):
            request(
                services,
                handlers.create_domain,
                {"DomainName": D, "DefaultExpirationDays": 9, **refused},
            )
    with services.read() as tx:
        assert get_domain(tx, domain_name=D).config["DefaultExpirationDays"] == 5
