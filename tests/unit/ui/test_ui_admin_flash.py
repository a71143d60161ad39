"""The administrator pages' success messages come from the change itself, not from the address
(ui.flash): a link with `?deleted=...`, `?purged=9999`, `?retried=...` or `?retry=failed` shows
no message, and a real deletion, purge or retry shows its message once, in the session that made
it, not again on reload. On SQLite and PostgreSQL."""

from __future__ import annotations

from starlette.testclient import TestClient
from tests.unit.ingest.conftest import DOMAIN
from tests.unit.ui.test_ui_admin_ops import (  # noqa: F401 (fixtures)
    INSTANCE,
    admin,
    count,
    csrf_of,
    letters,
    services_of,
)

from openprofiles.integrations import service as integrations

INTEGRATIONS = f"/admin/domains/{DOMAIN}/integrations"
DLQ = f"/admin/domains/{DOMAIN}/dlq"
FAKE = "arn:aws:connect:us-east-1:666666666666:instance/send-your-password-to-evil.example"


def test_a_link_shows_no_success_message(
    admin: TestClient,  # noqa: F811
    letters: list[str],  # noqa: F811
) -> None:
    shown = admin.get(INTEGRATIONS, params={"deleted": FAKE}).text
    assert FAKE not in shown and "Deleted the integration" not in shown
    for query in (
        {"purged": "9999"},
        {"retried": "5", "failed": "0"},
        {"retried": "0", "superseded": "3"},
    ):
        shown = admin.get(DLQ, params=query).text
        assert 'class="alert' not in shown, query
        # Not "9999" alone: a letter's random id or the page's token may hold it.
        assert "Purged 9999" not in shown and "Retried" not in shown, query
    shown = admin.get(f"{DLQ}/{letters[0]}", params={"retry": "failed"}).text
    assert "The retry failed again" not in shown


def test_a_deletion_is_confirmed_once(admin: TestClient) -> None:  # noqa: F811
    services = services_of(admin)
    with services.write() as tx:
        integrations.associate_instance(tx, domain_name=DOMAIN, instance_arn=INSTANCE, move=False)
    token = csrf_of(admin.get(INTEGRATIONS).text)
    done = admin.post(
        f"{INTEGRATIONS}/delete", data={"csrf_token": token, "uri": INSTANCE, "confirm": "yes"}
    )
    assert done.status_code == 303 and done.headers["location"] == INTEGRATIONS
    assert f"Deleted the integration {INSTANCE}." in admin.get(INTEGRATIONS).text
    assert "Deleted the integration" not in admin.get(INTEGRATIONS).text


def test_a_purge_and_a_retry_are_confirmed_once(
    admin: TestClient,  # noqa: F811
    letters: list[str],  # noqa: F811
) -> None:
    token = csrf_of(admin.get(DLQ).text)
    retried = admin.post(f"{DLQ}/{letters[1]}/retry", data={"csrf_token": token})
    assert retried.headers["location"] == f"{DLQ}/{letters[1]}"
    assert "The retry failed again" in admin.get(f"{DLQ}/{letters[1]}").text
    assert "The retry failed again" not in admin.get(f"{DLQ}/{letters[1]}").text
    done = admin.post(f"{DLQ}/{letters[0]}/purge", data={"csrf_token": token, "confirm": "yes"})
    assert done.status_code == 303 and done.headers["location"] == DLQ
    assert count(services_of(admin)) == 1
    assert "Purged 1 record." in admin.get(DLQ).text
    assert "Purged" not in admin.get(DLQ).text
    done = admin.post(f"{DLQ}/retry", data={"csrf_token": token})
    assert "Retried: 0 applied, 1 still failing" in admin.get(done.headers["location"]).text
    assert "Retried" not in admin.get(DLQ).text
