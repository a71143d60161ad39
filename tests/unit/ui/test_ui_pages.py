"""Admin and agent pages through Starlette's TestClient: the wizard stores nothing on error, the
agent's forms validate on the server, and output is escaped."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from html.parser import HTMLParser

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from openprofiles.app import create_app
from openprofiles.crypto.keyring import Keyring
from openprofiles.domains import service as domains
from openprofiles.profiles import service as profiles
from openprofiles.settings import Settings
from openprofiles.store.schema.core import local_key_record
from openprofiles.users import service as users

PASSWORD = "long enough password"


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match
    return match.group(1)


@contextmanager
def signed_in_admin(settings: Settings) -> Iterator[TestClient]:
    """A TestClient of a new app, signed in as the admin `boss`."""
    app = create_app(settings)
    with app.state.services.write() as tx:
        users.create_user(tx, username="boss", password=PASSWORD, role="admin")
    with TestClient(app, follow_redirects=False) as client:
        page = client.get("/ui/sign-in")
        client.post(
            "/ui/sign-in",
            data={"username": "boss", "password": PASSWORD, "csrf_token": csrf_of(page.text)},
        )
        yield client
    app.state.services.database.dispose()


@pytest.fixture
def admin(settings: Settings) -> Iterator[TestClient]:
    with signed_in_admin(settings) as client:
        yield client


def wizard(client: TestClient, **fields: str) -> tuple[int, str]:
    page = client.get("/admin/enable")
    data = {
        "csrf_token": csrf_of(page.text),
        "domain_choice": "new",
        "retention_days": "366",
        "dlq_choice": "none",
        "key_choice": "default",
        "action": "submit",
        **fields,
    }
    response = client.post("/admin/enable", data=data)
    return response.status_code, response.text


def stored_domains(client: TestClient) -> list[str]:
    services = client.app.state.services  # type: ignore[attr-defined]
    with services.read() as tx:
        return [d.name for d in domains.list_domains(tx, after=None, limit=100)[0]]


def test_wizard_creates_the_domain(admin: TestClient) -> None:
    status, _ = wizard(admin, domain_name="acme", retention_days="30")
    assert status == 303
    services = admin.app.state.services  # type: ignore[attr-defined]
    with services.read() as tx:
        record = domains.get_domain(tx, domain_name="acme")
    assert record.config == {"DefaultExpirationDays": 30}
    done = admin.get("/admin/enable/acme/done")
    assert "Customer profiles enabled" in done.text


def test_wizard_with_a_new_local_key(admin: TestClient, settings: Settings) -> None:
    status, _ = wizard(admin, domain_name="acme", key_choice="new_local", new_key_alias="acme-k")
    assert status == 303
    key = Keyring(settings.keyring_path).find_by_alias("acme-k")
    assert key is not None
    services = admin.app.state.services  # type: ignore[attr-defined]
    with services.read() as tx:
        record = domains.get_domain(tx, domain_name="acme")
    assert record.config["DefaultEncryptionKey"].endswith(key.key_id)
    # Recorded as `keys create` records it: a keyring copy without it is older than the data.
    with services.read() as tx:
        recorded = tx.conn.execute(
            select(local_key_record.c.key_id, local_key_record.c.versions)
        ).all()
    assert [(r.key_id, r.versions) for r in recorded] == [(key.key_id, len(key.versions))]


@pytest.mark.parametrize(
    ("fields", "field_id", "message"),
    [
        ({"domain_name": ""}, "domain_name", "Enter a name"),
        ({"domain_name": "a b"}, "domain_name", "no spaces"),
        ({"domain_name": "ok", "retention_days": "0"}, "retention_days", "1 to 1098"),
        (
            {"domain_name": "ok", "dlq_choice": "queue", "dlq_url": "https://x.example/q"},
            "dlq_url",
            "ACCOUNT-ID/QUEUE-NAME",
        ),
        (
            {"domain_name": "ok", "key_choice": "local", "local_key": "nope"},
            "local_key",
            "Choose one of the listed",
        ),
        (
            {"domain_name": "ok", "key_choice": "kms", "kms_arn": "not-an-arn"},
            "kms_arn",
            "Enter a KMS key ARN",
        ),
        (
            {
                "domain_name": "ok",
                "key_choice": "kms",
                "kms_arn": "arn:openprofiles:kms:us-east-1:000000000000:key/"
                "00000000-0000-0000-0000-000000000000",
            },
            "kms_arn",
            "does not exist in the keyring",
        ),
        ({"domain_choice": "existing", "existing_domain": "ghost"}, "existing_domain", "Choose"),
        # Values the page does not offer (a form posted by hand) used to mean the default.
        ({"domain_name": "ok", "key_choice": "bogus"}, "key_choice", "new_local, kms), not"),
        ({"domain_name": "ok", "dlq_choice": "sqs"}, "dlq_choice", "(none, queue)"),
        ({"domain_name": "ok", "domain_choice": "create"}, "domain_choice", "(new, existing)"),
    ],
)
def test_wizard_errors_are_shown_at_the_field_and_nothing_is_stored(
    admin: TestClient, fields: dict[str, str], field_id: str, message: str
) -> None:
    status, html = wizard(admin, **fields)
    assert status == 400
    error = re.search(rf'id="{field_id}-error">([^<]*)<', html)
    assert error, html
    assert message in error.group(1)
    assert stored_domains(admin) == []


def field_errors(html: str) -> dict[str, str]:
    return dict(re.findall(r'<p class="error" id="([a-z_]+)-error">([^<]*)<', html))


def test_an_unknown_choice_shows_every_other_field_error_and_keeps_the_entries(
    admin: TestClient,
) -> None:
    status, html = wizard(
        admin,
        domain_name="a b",
        retention_days="0",
        dlq_choice="queue",
        dlq_url="https://x.example/q",
        key_choice="KMS",
    )
    assert status == 400
    errors = field_errors(html)
    assert set(errors) == {"key_choice", "domain_name", "retention_days", "dlq_url"}, html
    assert "not &#39;KMS&#39;" in errors["key_choice"]
    assert 'value="a b"' in html
    assert 'value="https://x.example/q"' in html
    assert stored_domains(admin) == []


def test_an_unknown_domain_choice_still_checks_the_queue_and_the_key(admin: TestClient) -> None:
    status, html = wizard(
        admin,
        domain_choice="create",
        domain_name="acme",
        dlq_choice="queue",
        dlq_url="https://x.example/q",
        key_choice="new_local",
        new_key_alias="bad alias!",
    )
    assert status == 400
    assert set(field_errors(html)) == {"domain_choice", "dlq_url", "new_key_alias"}, html
    assert 'value="acme"' in html
    assert stored_domains(admin) == []


def test_wizard_refuses_an_existing_name(admin: TestClient) -> None:
    assert wizard(admin, domain_name="acme")[0] == 303
    status, html = wizard(admin, domain_name="acme")
    assert status == 400
    assert "already exists" in html


def test_new_key_is_not_created_when_another_field_is_wrong(
    admin: TestClient, settings: Settings
) -> None:
    status, _ = wizard(
        admin, domain_name="a b", key_choice="new_local", new_key_alias="should-not-exist"
    )
    assert status == 400
    assert Keyring(settings.keyring_path).find_by_alias("should-not-exist") is None


def test_profile_form_validates_and_escapes(admin: TestClient) -> None:
    assert wizard(admin, domain_name="acme")[0] == 303
    page = admin.get("/agent/domains/acme/profiles/new")
    hostile = "<script>alert(1)</script>"
    response = admin.post(
        "/agent/domains/acme/profiles/new",
        data={"csrf_token": csrf_of(page.text), "FirstName": hostile, "EmailAddress": "bad"},
    )
    assert response.status_code == 400
    assert hostile not in response.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in response.text
    services = admin.app.state.services  # type: ignore[attr-defined]
    with services.read() as tx:
        found, _ = profiles.search_profiles(
            tx, domain_name="acme", criteria=[profiles.SearchCriterion("_fullName", (hostile,))]
        )
    assert found == []
    response = admin.post(
        "/agent/domains/acme/profiles/new",
        data={"csrf_token": csrf_of(page.text), "FirstName": hostile},
    )
    assert response.status_code == 303
    profile_page = admin.get(response.headers["location"])
    assert hostile not in profile_page.text
    assert "default-src 'none'" in profile_page.headers["content-security-policy"]
    search_page = admin.get("/agent/domains/acme")
    found = admin.post(
        "/agent/domains/acme", data={"csrf_token": csrf_of(search_page.text), "q": hostile}
    )
    assert found.status_code == 303
    search = admin.get(found.headers["location"])
    assert search.status_code == 200
    assert hostile not in search.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in search.text


def test_unknown_domain_and_profile_are_friendly_404s(admin: TestClient) -> None:
    assert admin.get("/agent/domains/ghost").status_code == 404
    assert wizard(admin, domain_name="acme")[0] == 303
    response = admin.get("/agent/domains/acme/profiles/" + "0" * 32)
    assert response.status_code == 404
    assert "does not exist" in response.text


def test_screen_pop_for_an_unknown_domain_is_a_404_that_says_so(admin: TestClient) -> None:
    assert wizard(admin, domain_name="acme")[0] == 303
    hostile = "<b>ghost</b>"
    response = admin.get("/agent/contacts/c-1", params={"domain": hostile})
    assert response.status_code == 404
    assert "The domain &lt;b&gt;ghost&lt;/b&gt; does not exist." in response.text
    assert hostile not in response.text
    assert "<form" not in response.text.split("</header>")[-1]
    assert stored_domains(admin) == ["acme"]


class _FormFields(HTMLParser):
    """What a browser would submit from a page's form: inputs, textareas and the selected
    option of each select, by name."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, str] = {}
        self._textarea: str | None = None
        self._select: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        name = found.get("name")
        if tag == "input" and name and found.get("type") != "submit":
            self.fields[name] = found.get("value") or ""
        elif tag == "textarea" and name:
            self._textarea = name
            self.fields[name] = ""
        elif tag == "select":
            self._select = name
            if name:
                self.fields.setdefault(name, "")
        elif tag == "option" and "selected" in found and self._select:
            self.fields[self._select] = found.get("value") or ""

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            # A browser sends a textarea's line breaks as CRLF.
            self.fields[self._textarea] += data.lstrip("\n").replace("\n", "\r\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "textarea":
            self._textarea = None


def test_saving_the_edit_form_writes_only_what_the_agent_changed(admin: TestClient) -> None:
    assert wizard(admin, domain_name="acme")[0] == 303
    services = admin.app.state.services  # type: ignore[attr-defined]
    with services.write() as tx:
        record = profiles.create_profile(
            tx,
            domain_name="acme",
            fields={
                "FirstName": "Ana",
                "PhoneNumber": "call me",
                "AdditionalInformation": "line one\nline two",
                "Attributes": {"utm=source": "mail", "tier": "gold"},
            },
        )
    url = f"/agent/domains/acme/profiles/{record.profile_id}/edit"
    parser = _FormFields()
    parser.feed(admin.get(url).text)
    # Meanwhile, someone else changes the last name.
    with services.write() as tx:
        profiles.update_profile(
            tx, domain_name="acme", profile_id=record.profile_id, changes={"LastName": "Elsewhere"}
        )

    response = admin.post(url, data={**parser.fields, "FirstName": "Anna"})

    assert response.status_code == 303
    with services.read() as tx:
        fields = profiles.get_profile(tx, domain_name="acme", profile_id=record.profile_id).fields
    assert fields["FirstName"] == "Anna"
    assert fields["LastName"] == "Elsewhere"
    assert fields["AdditionalInformation"] == "line one\nline two"
    assert fields["Attributes"] == {"utm=source": "mail", "tier": "gold"}
    assert fields["PhoneNumber"] == "call me"
    # Changing the field someone else changed is refused, and says why.
    response = admin.post(url, data={**parser.fields, "LastName": "Mine"})
    assert response.status_code == 400 and "Someone else changed this field" in response.text
