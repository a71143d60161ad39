"""What the dead-letter queue's page says after "Purge all", through Starlette's TestClient: the
records dead-lettered after the confirmation was shown that were kept, and those counted that
were gone already, in the words of `openprofiles dlq purge --all`; and a confirmation from
before an upgrade (a form without the sealed count) answered with a fresh confirmation."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient
from tests.unit.ingest.conftest import DOMAIN, crm_type, put_type
from tests.unit.ui.test_ui_admin_ops import (
    count,
    counted_of,
    csrf_of,
    purge_all,
    reject,
    services_of,
    signed_in,
)

from openprofiles.dlq import service as dlq
from openprofiles.settings import Settings

PURGE = f"/admin/domains/{DOMAIN}/dlq/purge"
GONE = "{} of the {} counted {} gone already (retried, expired or purged meanwhile)."


@pytest.fixture
def admin(settings: Settings) -> Iterator[TestClient]:
    yield from signed_in(settings, "admin")


@pytest.fixture
def letters(admin: TestClient) -> list[str]:
    services = services_of(admin)
    put_type(services, "Crm", crm_type(AllowProfileCreation=False))
    return [reject(services, {"id": str(n), "email": f"{n}@x.com"}) for n in range(3)]


def said(page: str) -> str:
    """The confirmation the dead-letter queue's page shows after a purge."""
    start = page.index("Purged ")
    return page[start : page.index("</p>", start)]


def test_purge_all_says_nothing_more_when_it_purged_what_it_counted(
    admin: TestClient, letters: list[str]
) -> None:
    status, shown = purge_all(admin, admin.get(PURGE).text)
    assert status == 303 and said(shown) == "Purged 3 records."


def test_purge_all_says_how_many_dead_lettered_after_the_count_were_kept(
    admin: TestClient, letters: list[str]
) -> None:
    services = services_of(admin)
    confirmed = admin.get(PURGE).text
    arrived = [reject(services, {"id": f"new{n}", "email": f"n{n}@x.com"}) for n in range(2)]
    status, shown = purge_all(admin, confirmed)
    assert status == 303
    assert said(shown) == (
        "Purged 3 records. 2 records dead-lettered after the confirmation page was shown were kept."
    )
    with services.read() as tx:
        assert dlq.letter_ids(tx, domain_name=DOMAIN) == arrived
    # Said once: a reload shows the queue only.
    assert "Purged" not in admin.get(f"/admin/domains/{DOMAIN}/dlq").text


def test_purge_all_says_how_many_counted_were_gone_already(
    admin: TestClient, letters: list[str]
) -> None:
    services = services_of(admin)
    confirmed = admin.get(PURGE).text
    with services.write() as tx:  # another admin's purge, while this one reads the question
        dlq.purge(tx, domain_name=DOMAIN, message_ids=letters[:2])
    status, shown = purge_all(admin, confirmed)
    assert status == 303
    assert said(shown) == "Purged 1 record. " + GONE.format(2, 3, "were")
    assert count(services) == 0


def test_purge_all_says_both_in_the_singular(admin: TestClient, letters: list[str]) -> None:
    services = services_of(admin)
    confirmed = admin.get(PURGE).text
    with services.write() as tx:
        dlq.purge(tx, domain_name=DOMAIN, message_ids=letters[:1])
    arrived = reject(services, {"id": "new", "email": "n@x.com"})
    status, shown = purge_all(admin, confirmed)
    assert status == 303
    assert said(shown) == (
        "Purged 2 records. " + GONE.format(1, 3, "was") + " 1 record dead-lettered after "
        "the confirmation page was shown was kept."
    )
    with services.read() as tx:
        assert dlq.letter_ids(tx, domain_name=DOMAIN) == [arrived]


def test_a_confirmation_from_before_the_upgrade_is_asked_again(
    admin: TestClient, letters: list[str]
) -> None:
    """The form of a confirmation page shown by the version before the sealed count: the CSRF
    token and the ticked box, no count. Nothing is purged, and the answer is the confirmation
    again, saying why, with a fresh count that then purges."""
    services = services_of(admin)
    token = csrf_of(admin.get(f"/admin/domains/{DOMAIN}/dlq").text)
    refused = admin.post(PURGE, data={"csrf_token": token, "confirm": "yes"})
    assert refused.status_code == 400
    assert "Nothing was purged" in refused.text
    assert "opened before the server was upgraded" in refused.text
    assert "confirm again" in refused.text
    assert "Delete all 3 records" in refused.text
    assert count(services) == 3
    done = admin.post(
        PURGE, data={"csrf_token": token, "confirm": "yes", **counted_of(refused.text)}
    )
    assert done.status_code == 303
    assert said(admin.get(done.headers["location"]).text) == "Purged 3 records."
    assert count(services) == 0
