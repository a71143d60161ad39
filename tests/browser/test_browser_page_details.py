"""Details of the web pages in Chromium against a live server: Enter in a field of the enable
wizard sets up the domain (not the queue policy, the form's other button), and a profile's
additional information keeps its line breaks, still escaped."""

from __future__ import annotations

import uuid

import pytest
from playwright.sync_api import Page, expect
from tests.browser.conftest import WebUsers, sign_in
from tests.support.server import LiveServer

pytestmark = pytest.mark.browser


def test_enter_in_the_wizard_sets_up_the_domain(
    page: Page, live_server: LiveServer, web_users: WebUsers
) -> None:
    sign_in(page, live_server, web_users.admin)
    page.goto(f"{live_server.url}/admin/enable")
    # The queue policy button still shows the policy.
    page.get_by_label("Send failed records to an SQS queue").check()
    page.get_by_label("SQS queue URL").fill(
        "https://sqs.eu-west-1.amazonaws.com/123456789012/profiles-dlq"
    )
    page.get_by_role("button", name="Show the queue policy").click()
    expect(page.locator("#queue-policy")).to_contain_text("arn:aws:sqs:eu-west-1")

    name = f"enter-{uuid.uuid4().hex[:8]}"
    # A URL left in its field with "No queue" chosen is refused, not silently dropped.
    page.get_by_label("SQS queue URL").fill("")
    page.get_by_label("No queue").check()
    page.get_by_label("Friendly name of the new domain").fill(name)
    page.get_by_label("Friendly name of the new domain").press("Enter")

    expect(
        page.get_by_role("heading", name="Associate your contact-centre instance")
    ).to_be_visible()
    assert live_server.client().get_domain(DomainName=name)["DomainName"] == name
    # One Submit button for people and assistive technology: the default one is hidden.
    page.goto(f"{live_server.url}/admin/enable")
    expect(page.get_by_role("button", name="Submit", exact=True)).to_have_count(1)


def test_additional_information_keeps_its_line_breaks(
    page: Page, live_server: LiveServer, web_users: WebUsers
) -> None:
    client = live_server.client()
    domain = f"lines-{uuid.uuid4().hex[:8]}"
    client.create_domain(DomainName=domain, DefaultExpirationDays=366)
    profile_id = client.create_profile(
        DomainName=domain,
        FirstName="Lin",
        AdditionalInformation="Prefers email\nCall after 5 pm\n<b>VIP</b>",
    )["ProfileId"]

    sign_in(page, live_server, web_users.agent)
    page.goto(f"{live_server.url}/agent/domains/{domain}/profiles/{profile_id}")

    shown = page.locator("dd", has_text="Prefers email")
    expect(shown).to_have_count(1)
    # As rendered: one line each (inner text follows the CSS), the markup shown as text.
    assert shown.inner_text().splitlines() == ["Prefers email", "Call after 5 pm", "<b>VIP</b>"]
    expect(shown.locator("b")).to_have_count(0)
