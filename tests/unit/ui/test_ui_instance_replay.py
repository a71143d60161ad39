"""The admin pages that associate an instance (the instances page, the enable wizard's instance
step) with thousands of kept contact records (PostgreSQL): the association commits with the
first chunk and the page sends the rest, a transaction a chunk. Before, every record's advisory
locks were taken in the association's one transaction: "out of shared memory", nothing
associated."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient
from tests.unit.integrations.integ_helpers import ctr
from tests.unit.ui.test_ui_admin_ops import DOMAIN, INSTANCE, OTHER, csrf_of, owner, signed_in

from openprofiles.contacts.kept import count_unrouted
from openprofiles.contacts.records import split_body
from openprofiles.contacts.service import REPLAY_CHUNK, ingest_contact_items
from openprofiles.context import Services
from openprofiles.settings import Settings

KEPT = 6000
pytestmark = pytest.mark.parametrize("settings", ["postgres"], indirect=True)


@pytest.fixture
def admin(settings: Settings) -> Iterator[TestClient]:
    yield from signed_in(settings, "admin")


def _keep(services: Services) -> None:
    records = [
        json.dumps(ctr(f"kept-{n:05d}", address=f"+1720{n:07d}", instance=INSTANCE))
        for n in range(KEPT)
    ]
    for start in range(0, KEPT, REPLAY_CHUNK):
        with services.write() as tx:
            body = "\n".join(records[start : start + REPLAY_CHUNK])
            assert ingest_contact_items(tx, split_body(body)).unrouted == {
                INSTANCE: len(records[start : start + REPLAY_CHUNK])
            }


def _all_sent_on(services: Services) -> bool:
    with services.read() as tx:
        return count_unrouted(tx, instance_arn=INSTANCE) == {}


def test_the_instances_page(admin: TestClient) -> None:
    services: Services = admin.app.state.services  # type: ignore[attr-defined]
    _keep(services)
    token = csrf_of(admin.get("/admin/instances").text)

    response = admin.post(
        "/admin/instances",
        data={"csrf_token": token, "instance_arn": INSTANCE, "domain_name": DOMAIN},
    )

    assert response.status_code == 200
    assert f"Replayed {KEPT} contact records" in response.text
    assert owner(admin) == DOMAIN and _all_sent_on(services)


def test_the_wizard_instance_step(admin: TestClient) -> None:
    services: Services = admin.app.state.services  # type: ignore[attr-defined]
    _keep(services)
    url = f"/admin/enable/{OTHER}/instance"
    token = csrf_of(admin.get(url).text)

    response = admin.post(url, data={"csrf_token": token, "instance_arn": INSTANCE})

    assert response.status_code == 303
    assert owner(admin) == OTHER and _all_sent_on(services)
