"""The operations pages in Chromium against a live server: a record rejected into the
dead-letter queue, retried from the page after the object type is fixed; an instance moved to
another domain; integrations and flows; and an agent refused these pages."""

from __future__ import annotations

import json
import uuid

import pytest
from playwright.sync_api import Page, expect
from tests.browser.conftest import WebUsers, screenshot, sign_in
from tests.support.server import LiveServer

pytestmark = pytest.mark.browser

CRM_KEYS = {
    "Fields": {
        "id": {"Source": "_source.id", "Target": "_profile.AccountNumber", "ContentType": "STRING"},
        "email": {
            "Source": "_source.email",
            "Target": "_profile.EmailAddress",
            "ContentType": "EMAIL_ADDRESS",
        },
        "first": {"Source": "_source.first", "Target": "_profile.FirstName", "ContentType": "NAME"},
    },
    "Keys": {
        "id": [{"StandardIdentifiers": ["PROFILE", "UNIQUE"], "FieldNames": ["id"]}],
        "email": [{"StandardIdentifiers": ["PROFILE"], "FieldNames": ["email"]}],
    },
}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def field_error(page: Page, field_id: str) -> str:
    return page.locator(f'[id="{field_id}-error"]').inner_text()


def put_crm_type(client: object, domain: str, allow: bool) -> None:
    client.put_profile_object_type(  # type: ignore[attr-defined]
        DomainName=domain,
        ObjectTypeName="Crm",
        Description="CRM customers",
        AllowProfileCreation=allow,
        **CRM_KEYS,
    )


def test_dead_letter_retry_from_the_page(
    page: Page, live_server: LiveServer, web_users: WebUsers
) -> None:
    client = live_server.client()
    domain = unique("dlq")
    client.create_domain(DomainName=domain, DefaultExpirationDays=366)
    put_crm_type(client, domain, allow=False)
    email = f"{uuid.uuid4().hex[:8]}@example.com"
    record = {"id": unique("crm"), "email": email, "first": "Nadia"}
    # No profile has this email and the type may not create one: the record is dead-lettered.
    client.put_profile_object(DomainName=domain, ObjectTypeName="Crm", Object=json.dumps(record))
    assert not client.search_profiles(DomainName=domain, KeyName="_email", Values=[email])["Items"]

    sign_in(page, live_server, web_users.admin)
    page.goto(f"{live_server.url}/admin/domains/{domain}")
    page.get_by_role("link", name="Dead-letter queue").last.click()
    expect(page.get_by_role("heading", name="Dead-letter queue", exact=True)).to_be_visible()
    rows = page.locator("table.dlq tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Crm")
    expect(rows.first).to_contain_text("no_profile")
    screenshot(page, "admin-dlq", live_server)

    rows.first.get_by_role("link").click()
    expect(page.get_by_role("heading", name="Why it was rejected")).to_be_visible()
    expect(page.locator("pre.record")).to_contain_text(f'"email": "{email}"')
    screenshot(page, "admin-dlq-message", live_server)

    # Still failing: the record stays, with another attempt counted.
    page.get_by_role("button", name="Retry record").click()
    expect(page.get_by_role("status")).to_contain_text("The retry failed again")

    # The purge asks for confirmation first, and does nothing without it.
    page.get_by_role("link", name="Purge…").click()
    page.get_by_role("button", name="Purge record").click()
    assert "Tick the box" in field_error(page, "confirm")
    screenshot(page, "admin-dlq-purge-confirm", live_server)
    page.get_by_role("link", name="Cancel").click()

    put_crm_type(client, domain, allow=True)
    page.get_by_role("link", name="Dead-letter queue").last.click()
    expect(rows.first).to_contain_text("2")
    page.get_by_role("button", name="Retry all 1").click()
    expect(page.get_by_role("status")).to_contain_text("Retried: 1 applied, 0 still failing")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("No dead letters")
    screenshot(page, "admin-dlq-retried", live_server)

    found = client.search_profiles(DomainName=domain, KeyName="_email", Values=[email])["Items"]
    assert [p["FirstName"] for p in found] == ["Nadia"]


def test_move_an_instance_through_the_page(
    page: Page, live_server: LiveServer, web_users: WebUsers
) -> None:
    client = live_server.client()
    first, second = unique("inst-a"), unique("inst-b")
    for name in (first, second):
        client.create_domain(DomainName=name, DefaultExpirationDays=366)
    instance = f"arn:aws:connect:us-east-1:123456789012:instance/{uuid.uuid4()}"

    sign_in(page, live_server, web_users.admin)
    page.goto(f"{live_server.url}/admin/domains")
    page.get_by_role("link", name="Integrations", exact=True).click()
    page.get_by_role("link", name="Instance association").click()
    expect(page.get_by_role("heading", name="Instance association")).to_be_visible()
    page.get_by_label("Instance ARN").fill("arn:aws:connect:us-east-1:1:instance/x y")
    page.get_by_label("Domain", exact=True).select_option(first)
    page.get_by_role("button", name="Associate instance").click()
    assert "Enter the instance ARN" in field_error(page, "instance_arn")
    page.get_by_label("Instance ARN").fill(instance)
    page.get_by_role("button", name="Associate instance").click()
    expect(page.get_by_role("status")).to_contain_text(f"is associated with domain {first}")

    # To another domain without ticking "move": refused at the box, with the warning.
    page.get_by_label("Instance ARN").fill(instance)
    page.get_by_label("Domain", exact=True).select_option(second)
    page.get_by_role("button", name="Associate instance").click()
    assert f"associated with domain {first} now" in field_error(page, "move")
    expect(page.get_by_label("Instance ARN")).to_have_value(instance)
    expect(page.get_by_text("Profiles do not move.")).to_be_visible()
    screenshot(page, "admin-instances-error", live_server)

    page.get_by_role("link", name=f"Change the domain of {instance}").click()
    expect(page.get_by_label("Instance ARN")).to_have_value(instance)
    page.get_by_label("Domain", exact=True).select_option(second)
    expect(page.get_by_label("Move the instance")).to_be_checked()
    page.get_by_role("button", name="Associate instance").click()
    status = page.get_by_role("status")
    expect(status).to_contain_text(f"It was moved from {first}")
    expect(status).to_contain_text(f"contact history stay in {first}")
    screenshot(page, "admin-instances", live_server)

    assert not client.list_integrations(DomainName=first)["Items"]
    moved = client.list_integrations(DomainName=second)["Items"]
    assert [i["Uri"] for i in moved] == [instance]

    page.get_by_role("link", name="Integrations", exact=True).click()
    page.get_by_role("link", name=second).click()
    expect(page.get_by_role("table")).to_contain_text(instance)
    expect(page.get_by_role("table")).to_contain_text("Contact-centre instance")
    screenshot(page, "admin-integrations", live_server)


def test_agent_is_refused_the_operations_pages(
    page: Page, live_server: LiveServer, web_users: WebUsers
) -> None:
    sign_in(page, live_server, web_users.agent)
    for path in ("/admin/dlq", "/admin/integrations", "/admin/instances"):
        response = page.goto(f"{live_server.url}{path}")
        assert response is not None and response.status == 403
        expect(page.get_by_role("heading", name="Not available to agents")).to_be_visible()
    expect(page.get_by_role("link", name="Dead letters")).to_have_count(0)
    screenshot(page, "agent-refused-dlq", live_server)
