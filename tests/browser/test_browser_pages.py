"""The web pages in Chromium against a live server: the enable wizard, agent search, create and
edit, role refusal, and escaping of customer data."""

from __future__ import annotations

import re
import uuid
from urllib.parse import unquote_plus

import pytest
from playwright.sync_api import Page, expect
from tests.browser.conftest import PASSWORD, WebUsers, screenshot, sign_in
from tests.support.server import LiveServer

pytestmark = pytest.mark.browser


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def field_error(page: Page, field_id: str) -> str:
    return page.locator(f'[id="{field_id}-error"]').inner_text()


def test_enable_wizard(page: Page, live_server: LiveServer, web_users: WebUsers) -> None:
    client = live_server.client()
    sign_in(page, live_server, web_users.admin)
    page.goto(f"{live_server.url}/admin/enable")
    for heading in (
        "Enable customer profiles",
        "Specify a domain",
        "Specify dead-letter queue",
        "Specify KMS key",
        "Submit",
    ):
        expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
    screenshot(page, "enable-wizard", live_server)
    before = {d["DomainName"] for d in client.list_domains()["Items"]}

    # Bad input everywhere: each error is shown at its field, the input is kept, nothing stored.
    page.get_by_label("Friendly name of the new domain").fill("not a valid name!")
    page.get_by_label("Keep data for (days)").fill("5000")
    page.get_by_label("Send failed records to an SQS queue").check()
    page.get_by_label("SQS queue URL").fill("ftp://nowhere")
    page.get_by_label("Create a new local key").check()
    page.get_by_label("Alias of the new key").fill("bad alias with spaces")
    page.get_by_role("button", name="Submit", exact=True).click()
    assert "no spaces" in field_error(page, "domain_name")
    assert "1 to 1098" in field_error(page, "retention_days")
    assert "SQS queue URL" in field_error(page, "dlq_url")
    assert "not valid" in field_error(page, "new_key_alias")
    expect(page.get_by_label("Friendly name of the new domain")).to_have_value("not a valid name!")
    expect(page.get_by_label("SQS queue URL")).to_have_value("ftp://nowhere")
    screenshot(page, "enable-wizard-errors", live_server)
    assert {d["DomainName"] for d in client.list_domains()["Items"]} == before

    # The queue's policy statement, with the queue's ARN derived from its URL.
    name = unique("acme")
    page.get_by_label("Friendly name of the new domain").fill(name)
    page.get_by_label("Keep data for (days)").fill("366")
    page.get_by_label("SQS queue URL").fill(
        "https://sqs.eu-west-1.amazonaws.com/123456789012/profiles-dlq"
    )
    page.get_by_role("button", name="Show the queue policy").click()
    policy = page.locator("#queue-policy").inner_text()
    assert '"Resource": "arn:aws:sqs:eu-west-1:123456789012:profiles-dlq"' in policy
    assert f"domains/{name}" in policy
    assert "profile.amazonaws.com" in policy

    # An unreachable queue is refused at its field.
    page.get_by_label("SQS queue URL").fill("http://127.0.0.1:9/000000000000/missing")
    alias = unique("wizard-key")
    page.get_by_label("Alias of the new key").fill(alias)
    page.get_by_role("button", name="Submit", exact=True).click()
    assert "cannot be reached" in field_error(page, "dlq_url") or "answered" in field_error(
        page, "dlq_url"
    )
    assert {d["DomainName"] for d in client.list_domains()["Items"]} == before

    # Now a valid set-up: no queue (its URL cleared: one left there is refused, not
    # ignored), a new local key created right there.
    page.get_by_label("SQS queue URL").fill("")
    page.get_by_label("No queue").check()
    page.get_by_role("button", name="Submit", exact=True).click()
    expect(
        page.get_by_role("heading", name="Associate your contact-centre instance")
    ).to_be_visible()
    screenshot(page, "enable-instance", live_server)
    instance = (
        "arn:aws:connect:us-east-1:123456789012:instance/1d908e11-3d5f-4cfb-b34d-1e7e0f216898"
    )
    page.get_by_label("Instance ARN").fill(instance)
    # The contact-record template: CTR unless another is chosen, each option named by its label.
    expect(page.get_by_label("CTR (the default)", exact=True)).to_be_checked()
    page.get_by_label("CTR-NoInferred", exact=True).check()
    page.get_by_role("button", name="Associate instance").click()
    expect(page.get_by_role("heading", name="Customer profiles enabled")).to_be_visible()
    expect(page.get_by_text(name).first).to_be_visible()
    expect(page.get_by_text("its records ingested as CTR-NoInferred")).to_be_visible()
    screenshot(page, "enable-done", live_server)

    domain = client.get_domain(DomainName=name)
    assert domain["DefaultExpirationDays"] == 366
    assert re.match(r"^arn:openprofiles:kms:.*:key/[0-9a-f-]{36}$", domain["DefaultEncryptionKey"])
    assert "DeadLetterQueueUrl" not in domain
    associated = client.get_integration(DomainName=name, Uri=instance)
    assert associated["ObjectTypeName"] == "CTR-NoInferred"

    page.goto(f"{live_server.url}/admin/domains")
    expect(page.get_by_role("link", name=name)).to_be_visible()
    screenshot(page, "admin-domains", live_server)
    page.get_by_role("link", name=name).click()
    expect(page.get_by_role("heading", name="Statistics")).to_be_visible()
    screenshot(page, "admin-domain", live_server)


def test_admin_credentials_and_users(
    page: Page, live_server: LiveServer, web_users: WebUsers
) -> None:
    sign_in(page, live_server, web_users.admin)
    page.goto(f"{live_server.url}/admin/credentials")
    page.get_by_label("Role").select_option("agent")
    page.get_by_label("Your password").fill(PASSWORD)
    page.get_by_role("button", name="Create credential").click()
    key_id = page.locator("#new-access-key-id").inner_text()
    secret = page.locator("#new-secret").inner_text()
    screenshot(page, "admin-credentials", live_server)
    import boto3

    agent_client = boto3.client(
        "customer-profiles",
        endpoint_url=live_server.url,
        region_name=live_server.settings.region,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
    )
    agent_client.list_domains()
    # Deleted after a confirmation step: the box unticked, nothing is deleted.
    page.get_by_role("link", name=f"Delete credential {key_id}").click()
    page.get_by_role("button", name="Delete credential").click()
    assert "Tick the box" in field_error(page, "confirm")
    agent_client.list_domains()
    page.get_by_label("Delete this credential for good").check()
    page.get_by_label("Your password").fill(PASSWORD)
    page.get_by_role("button", name="Delete credential").click()
    expect(page.get_by_role("heading", name="API credentials")).to_be_visible()
    expect(page.get_by_text(key_id)).to_have_count(0)

    page.goto(f"{live_server.url}/admin/users")
    new_user = unique("agent")
    page.get_by_label("Username").fill(new_user)
    page.get_by_label("Password", exact=True).fill("short")
    page.get_by_label("Password again").fill("short")
    page.get_by_role("button", name="Create user").click()
    assert "at least 8" in field_error(page, "password")
    expect(page.get_by_label("Username")).to_have_value(new_user)
    page.get_by_label("Password", exact=True).fill("a long enough one")
    page.get_by_label("Password again").fill("a long enough one")
    page.get_by_label("Your password").fill(PASSWORD)
    page.get_by_role("button", name="Create user").click()
    expect(page.get_by_role("status")).to_contain_text(f"Created the user {new_user}")
    screenshot(page, "admin-users", live_server)


def test_agent_is_refused_admin_pages(
    page: Page, live_server: LiveServer, web_users: WebUsers
) -> None:
    page.goto(f"{live_server.url}/admin/enable")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    screenshot(page, "sign-in", live_server)
    sign_in(page, live_server, web_users.agent)
    response = page.goto(f"{live_server.url}/admin/enable")
    assert response is not None and response.status == 403
    expect(page.get_by_role("heading", name="Not available to agents")).to_be_visible()
    expect(page.get_by_role("link", name="Enable customer profiles")).to_have_count(0)
    screenshot(page, "agent-refused", live_server)


@pytest.fixture(scope="module")
def agent_domain(live_server: LiveServer) -> str:
    name = unique("agents")
    live_server.client().create_domain(DomainName=name, DefaultExpirationDays=366)
    return name


def test_search_by_phone_written_differently(
    page: Page, live_server: LiveServer, web_users: WebUsers, agent_domain: str
) -> None:
    client = live_server.client()
    client.create_profile(
        DomainName=agent_domain,
        FirstName="Maria",
        LastName="Garcia",
        PhoneNumber="+1 206-555-0142",
        EmailAddress="maria@example.com",
        AccountNumber="ACC-1001",
    )
    sign_in(page, live_server, web_users.agent)
    page.goto(f"{live_server.url}/agent/domains/{agent_domain}")
    page.get_by_label("Search customers").fill("(206) 555 0142")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("link", name="Maria Garcia")).to_be_visible()
    expect(page.get_by_role("heading", name=re.compile("1 result"))).to_contain_text("_phone")
    screenshot(page, "agent-search", live_server)

    for text, key in (("MARIA@example.com", "_email"), ("maria  garcia", "_fullName")):
        page.get_by_label("Search customers").fill(text)
        page.get_by_role("button", name="Search").click()
        expect(page.get_by_role("heading", name=re.compile("1 result"))).to_contain_text(key)
    page.get_by_label("Search customers").fill("ACC-1001")
    page.get_by_label("Search by").select_option("_account")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("link", name="Maria Garcia")).to_be_visible()

    page.get_by_role("link", name="Maria Garcia").click()
    expect(page.get_by_role("heading", name="Keys")).to_be_visible()
    expect(page.get_by_text("+1 206-555-0142").first).to_be_visible()
    screenshot(page, "agent-profile", live_server)


def test_create_then_edit_profile(
    page: Page, live_server: LiveServer, web_users: WebUsers, agent_domain: str
) -> None:
    sign_in(page, live_server, web_users.agent)
    page.goto(f"{live_server.url}/agent/domains/{agent_domain}")
    page.get_by_role("link", name="Create profile").click()
    page.get_by_label("First name").fill("Kofi")
    page.get_by_label("Last name").fill("Mensah")
    page.get_by_label("Phone number", exact=True).fill("call me maybe")
    page.get_by_label("Email address", exact=True).fill("kofi-at-example")
    page.get_by_label("Address line 1").fill("12 Harbour Road")
    page.get_by_role("button", name="Create profile").click()
    assert "Enter a phone number" in field_error(page, "PhoneNumber")
    assert "name@example.com" in field_error(page, "EmailAddress")
    expect(page.get_by_label("First name")).to_have_value("Kofi")
    expect(page.get_by_label("Address line 1")).to_have_value("12 Harbour Road")
    screenshot(page, "agent-create-errors", live_server)

    page.get_by_label("Phone number", exact=True).fill("+44 20 7946 0958")
    page.get_by_label("Email address", exact=True).fill("kofi@example.com")
    page.get_by_label("Attributes").fill("tier = gold")
    page.get_by_role("button", name="Create profile").click()
    expect(page.get_by_role("status")).to_contain_text("Profile saved")
    match = re.search(r"/profiles/([0-9a-f]{32})$", page.url)
    assert match, page.url
    profile_id = match.group(1)

    page.get_by_role("link", name="Edit profile").click()
    screenshot(page, "agent-edit", live_server)
    page.get_by_label("Last name").fill("Mensah-Owusu")
    page.get_by_label("Email address", exact=True).fill("")
    page.get_by_label("Attributes").fill("")
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_role("heading", name="Kofi Mensah-Owusu")).to_be_visible()

    found = live_server.client().search_profiles(
        DomainName=agent_domain, KeyName="_profileId", Values=[profile_id]
    )["Items"]
    assert len(found) == 1
    item = found[0]
    assert item["LastName"] == "Mensah-Owusu"
    assert item["PhoneNumber"] == "+44 20 7946 0958"
    assert item["Address"]["Address1"] == "12 Harbour Road"
    assert "EmailAddress" not in item
    assert "Attributes" not in item or "tier" not in item["Attributes"]


def test_customer_data_is_escaped(
    page: Page, live_server: LiveServer, web_users: WebUsers, agent_domain: str
) -> None:
    hostile = "<script>alert(1)</script>"
    profile_id = live_server.client().create_profile(
        DomainName=agent_domain,
        FirstName=hostile,
        AccountNumber="XSS-1",
        Attributes={hostile: hostile},
    )["ProfileId"]
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    sign_in(page, live_server, web_users.agent)
    page.goto(f"{live_server.url}/agent/domains/{agent_domain}/profiles/{profile_id}")
    expect(page.get_by_role("heading", level=1)).to_have_text(hostile)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.content()
    page.goto(f"{live_server.url}/agent/domains/{agent_domain}")
    page.get_by_label("Search customers").fill("XSS-1")
    page.get_by_label("Search by").select_option("_account")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("link", name=hostile)).to_be_visible()
    page.goto(f"{live_server.url}/agent/domains/{agent_domain}/profiles/{profile_id}/edit")
    expect(page.get_by_label("First name")).to_have_value(hostile)
    page.goto(f"{live_server.url}/agent/domains/{agent_domain}")
    page.get_by_label("Search customers").fill(hostile)
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("heading", name=re.compile("result|No profile found"))).to_contain_text(
        hostile
    )
    assert dialogs == []


def _shows(address: str, value: str) -> bool:
    """Whether an address holds the value, as written or encoded (once or more)."""
    seen = address
    while True:
        if value.lower() in seen.lower():
            return True
        plain = unquote_plus(seen)
        if plain == seen:
            return False
        seen = plain


def test_searched_email_stays_out_of_addresses_and_history(
    page: Page, live_server: LiveServer, web_users: WebUsers, agent_domain: str
) -> None:
    found_email = f"ines.{uuid.uuid4().hex[:6]}@example.com"
    missing_email = f"nadia.{uuid.uuid4().hex[:6]}@example.com"
    live_server.client().create_profile(
        DomainName=agent_domain, FirstName="Ines", LastName="Moreau", EmailAddress=found_email
    )
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    sign_in(page, live_server, web_users.agent)
    page.goto(f"{live_server.url}/agent/domains/{agent_domain}")

    page.get_by_label("Search customers").fill(found_email)
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("link", name="Ines Moreau")).to_be_visible()
    expect(page.get_by_role("heading", name=re.compile("1 result"))).to_contain_text("_email")
    assert not _shows(page.url, found_email), page.url
    # The search box still shows what was searched.
    expect(page.get_by_label("Search customers")).to_have_value(found_email)

    page.get_by_label("Search customers").fill(missing_email)
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("heading", name=re.compile("No profile found"))).to_be_visible()
    assert not _shows(page.url, missing_email), page.url
    page.get_by_role("link", name="create a profile").click()
    expect(page.get_by_label("Email address", exact=True)).to_have_value(missing_email)
    assert not _shows(page.url, missing_email), page.url

    # Back and forward show the results again, without resending a form.
    page.go_back()
    expect(page.get_by_role("heading", name=re.compile("No profile found"))).to_be_visible()
    page.go_back()
    expect(page.get_by_role("link", name="Ines Moreau")).to_be_visible()
    page.go_forward()
    expect(page.get_by_role("heading", name=re.compile("No profile found"))).to_be_visible()

    history = page.context.new_cdp_session(page).send("Page.getNavigationHistory")
    entries = history["entries"]
    assert len(entries) >= 4
    for entry in entries:
        for email in (found_email, missing_email):
            assert not _shows(entry["url"], email), entry["url"]
            assert email not in entry["title"], entry["title"]
    # Nor in any address the browser asked for (what an access log or a proxy records).
    assert requested
    for url in requested:
        for email in (found_email, missing_email):
            assert not _shows(url, email), url


def test_screen_pop_opens_the_linked_profile(
    page: Page, live_server: LiveServer, web_users: WebUsers, agent_domain: str
) -> None:
    client = live_server.client()
    contact_id = str(uuid.uuid4())
    profile_id = client.create_profile(
        DomainName=agent_domain, FirstName="Live", LastName="Caller"
    )["ProfileId"]
    client.add_profile_key(
        DomainName=agent_domain, ProfileId=profile_id, KeyName="_ctrContactId", Values=[contact_id]
    )
    sign_in(page, live_server, web_users.agent)
    page.goto(f"{live_server.url}/agent/contacts/{contact_id}?domain={agent_domain}")
    expect(page.get_by_role("heading", name="Live Caller")).to_be_visible()
    assert profile_id in page.url

    page.goto(f"{live_server.url}/agent/contacts/{uuid.uuid4()}?domain={agent_domain}")
    expect(page.get_by_text("No profile is linked to this contact yet")).to_be_visible()
    expect(page.get_by_label("Search customers")).to_be_visible()
    screenshot(page, "agent-screen-pop-none", live_server)


def test_profile_shows_contact_history(
    page: Page, live_server: LiveServer, web_users: WebUsers
) -> None:
    import json

    client = live_server.client()
    domain = unique("history")
    client.create_domain(DomainName=domain, DefaultExpirationDays=366)
    client.put_profile_object_type(
        DomainName=domain,
        ObjectTypeName="CTR",
        TemplateId="CTR-NoInferred",
        Description="Contact records",
    )
    profile_id = client.create_profile(
        DomainName=domain, FirstName="Ada", LastName="Okafor", PhoneNumber="+17208401003"
    )["ProfileId"]
    for minute, (channel, queue) in enumerate([("VOICE", "BasicQueue"), ("CHAT", "Support")]):
        record = {
            "ContactId": str(uuid.uuid4()),
            "Channel": channel,
            "InitiationTimestamp": f"2022-04-08T14:5{minute}:00Z",
            "DisconnectTimestamp": f"2022-04-08T15:0{minute}:30Z",
            "CustomerEndpoint": {"Address": "+17208401003", "Type": "TELEPHONE_NUMBER"},
            "Agent": {"Username": "agent7"},
            "Queue": {"Name": queue},
            "DisconnectReason": "CUSTOMER_DISCONNECT",
        }
        client.put_profile_object(
            DomainName=domain, ObjectTypeName="CTR", Object=json.dumps(record)
        )
    sign_in(page, live_server, web_users.agent)
    page.goto(f"{live_server.url}/agent/domains/{domain}/profiles/{profile_id}")
    expect(page.get_by_role("heading", name="Contact history and records")).to_be_visible()
    history = page.locator(".history table")
    expect(history.locator("tbody tr")).to_have_count(2)
    # Newest first.
    expect(history.locator("tbody tr").first).to_contain_text("CHAT")
    expect(history.locator("tbody tr").first).to_contain_text("Support")
    expect(history.locator("tbody tr").first).to_contain_text("agent7")
    screenshot(page, "agent-profile-history", live_server)
    history.get_by_role("link", name="Open").first.click()
    expect(page.get_by_role("heading", name="Contact record")).to_be_visible()
    # Labelled, what an agent reads of the contact; the record's JSON folded under it.
    details = page.locator("dl.contact-details")
    expect(details.locator("dt")).to_have_text(
        ["Contact ID", "Channel", "Start", "End", "Duration", "Agent", "Queue", "Disconnect reason"]
    )
    expect(details.locator("dd").nth(1)).to_have_text("CHAT")
    expect(details.locator("dd").nth(4)).to_have_text("10:30")
    expect(details.locator("dd").nth(6)).to_have_text("Support")
    expect(page.locator("pre.record")).to_be_hidden()
    page.get_by_text("The whole record, as JSON").click()
    expect(page.locator("pre.record")).to_be_visible()
    expect(page.locator("pre.record")).to_contain_text('"Channel": "CHAT"')
