"""Every page's list of domains has them all: the admin pages that offer a domain to choose
(dead letters, merges, matches, integrations, instances) page through the domains rather than
stop at the first 100, and an agent limited to some domains has them listed by the query, not
picked out of the first 1,000 in name order. And "Retry all" of a domain that does not exist is
a 404, as the other dead-letter actions are, not a redirect as if done."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient
from tests.unit.ui.test_ui_admin_ops import PASSWORD, csrf_of, services_of, signed_in

from openprofiles.context import Services
from openprofiles.domains.service import create_domain
from openprofiles.settings import Settings
from openprofiles.users import service as users

# After every other domain in name order.
LAST = "zz-last"


@pytest.fixture
def admin(settings: Settings) -> Iterator[TestClient]:
    yield from signed_in(settings, "admin")


def many_domains(services: Services, count: int) -> None:
    """`count` domains ("d0000"...) and LAST, in one transaction."""
    with services.write() as tx:
        for name in [*(f"d{i:04d}" for i in range(count)), LAST]:
            wrapped = services.keys.new_domain_key(name, None)
            create_domain(
                tx,
                domain_name=name,
                config={"DefaultExpirationDays": 30},
                key_id=wrapped.key_id,
                wrapped_key=wrapped.wrapped,
            )


@pytest.mark.parametrize(
    "page",
    ["/admin/dlq", "/admin/merges", "/admin/matches", "/admin/integrations", "/admin/instances"],
)
def test_admin_pages_offer_every_domain_past_the_first_hundred(
    admin: TestClient, page: str
) -> None:
    many_domains(services_of(admin), 120)

    shown = admin.get(page)

    assert shown.status_code == 200
    assert LAST in shown.text and "d0119" in shown.text


def test_a_scoped_agent_has_its_domain_listed_whatever_comes_before_it(
    admin: TestClient,
) -> None:
    services = services_of(admin)
    many_domains(services, 1000)
    with services.write() as tx:
        users.create_user(tx, username="scoped", password=PASSWORD, role="agent", domains=[LAST])
    admin.cookies.clear()
    sign_in = admin.get("/ui/sign-in")
    admin.post(
        "/ui/sign-in",
        data={"username": "scoped", "password": PASSWORD, "csrf_token": csrf_of(sign_in.text)},
    )

    home = admin.get("/agent/")

    # Its one domain: straight to it.
    assert home.status_code == 303 and home.headers["location"] == f"/agent/domains/{LAST}"


def test_retry_all_of_a_domain_that_does_not_exist_is_not_found(admin: TestClient) -> None:
    token = csrf_of(admin.get("/admin/dlq").text)

    retried = admin.post("/admin/domains/no-such-domain/dlq/retry", data={"csrf_token": token})

    assert retried.status_code == 404
