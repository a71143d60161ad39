"""The records of a `POST /contact-records` body that an error stopped part-way are counted as
taken in (openprofiles_contact_records_total): on PostgreSQL a body is applied
PG_RECORDS_PER_TRANSACTION records a transaction, and those committed before the error stay
applied. They were counted only with a 200 answer, so the metric missed records the database
holds. The request itself is counted as the failure it is. Through the real app, scraped."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient
from tests.support.contact_loader import found, loaded_data_dir
from tests.unit.integrations.integ_helpers import OTHER_INSTANCE, associate, ctr, make_domain

from openprofiles.app import create_app
from openprofiles.auth.credentials import IssuedCredential, create_credential
from openprofiles.context import Services
from openprofiles.crypto.keyring import Keyring
from openprofiles.settings import Settings
from openprofiles.store.chunks import PG_RECORDS_PER_TRANSACTION

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def loaded(settings: Settings) -> Iterator[Services]:
    with loaded_data_dir(settings) as (services, _options):
        yield services


def _scrape(client: TestClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def _grew(before: Samples, after: Samples, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0) - before.get(key, 0)


def _post(client: TestClient, key: IssuedCredential, region: str, body: bytes) -> int:
    url = "http://testserver/contact-records"
    request = AWSRequest(
        method="POST", url=url, data=body, headers={"Content-Type": "application/json"}
    )
    credentials = Credentials(key.access_key_id, key.secret_access_key)
    SigV4Auth(credentials, "profile", region).add_auth(request)
    return client.post(url, content=body, headers=dict(request.headers.items())).status_code


@pytest.mark.parametrize(
    "settings", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_records_committed_before_an_error_are_counted(
    loaded: Services, settings: Settings
) -> None:
    services = loaded
    keyring = Keyring(settings.keyring_path)
    key = keyring.create_key("tenant")
    make_domain(services, "keyed", key.arn(settings.region, settings.account_id))
    associate(services, "keyed", OTHER_INSTANCE)
    keyring.disable(key.key_id)
    with services.write() as tx:
        admin = create_credential(tx, role="admin")
    # A transaction's worth of records of the loaded domain, then one of the domain whose key
    # is disabled: the first transaction commits, the second fails.
    applied = PG_RECORDS_PER_TRANSACTION
    records = [ctr(f"p-{n}", address=f"+1206{5000000 + n:07d}") for n in range(applied)]
    records.append(ctr("p-keyed", instance=OTHER_INSTANCE))
    # An app of its own, as a server started now: no data key in its cache.
    app = create_app(settings)
    try:
        with TestClient(app) as client:
            before = _scrape(client)
            status = _post(client, admin, settings.region, json.dumps(records).encode())
            after = _scrape(client)
    finally:
        app.state.services.database.dispose()
    assert status >= 400
    assert [found(services, f"p-{n}") for n in (0, applied - 1)] == [1, 1]
    records_total = "openprofiles_contact_records_total"
    assert _grew(before, after, records_total, outcome="accepted") == applied
    assert _grew(before, after, records_total, outcome="rejected") == 0
    requests = "openprofiles_feed_requests_total"
    assert _grew(before, after, requests, feed="contact-records", status=str(status)) == 1
