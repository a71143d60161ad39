"""The match pages in Chromium against a live server: an administrator opens a domain's
matches, then the explanation of a rule-based match (its rule level and shared attributes) and
of an ML match group (attributes, comparison levels, weights and the confidence score)."""

from __future__ import annotations

import re
import uuid

import pytest
from playwright.sync_api import Page, expect
from tests.browser.conftest import WebUsers, screenshot, sign_in
from tests.support.server import LiveServer

from openprofiles.identity import ml_jobs

pytestmark = pytest.mark.browser

# One customer twice (a typo in the first name, the email in capitals, the phone formatted
# differently) and someone else.
PEOPLE = [
    {
        "FirstName": "Margaret",
        "LastName": "Hamilton",
        "EmailAddress": "margaret.hamilton@example.com",
        "PhoneNumber": "+1 206 555 0101",
        "BirthDate": "1936-08-17",
        "Address": {"City": "Boston", "PostalCode": "02139"},
    },
    {
        "FirstName": "Margret",
        "LastName": "Hamilton",
        "EmailAddress": "Margaret.Hamilton@Example.com",
        "PhoneNumber": "(206) 555-0101",
        "BirthDate": "1936-08-17",
        "Address": {"City": "boston", "PostalCode": "02139"},
    },
    {
        "FirstName": "Grace",
        "LastName": "Hopper",
        "EmailAddress": "grace@navy.example",
        "PhoneNumber": "+1 206 555 0102",
        "BirthDate": "1906-12-09",
        "Address": {"City": "Arlington", "PostalCode": "22201"},
    },
]


def test_admin_sees_why_profiles_match(
    page: Page, live_server: LiveServer, web_users: WebUsers
) -> None:
    client = live_server.client()
    domain = f"matches-{uuid.uuid4().hex[:8]}"
    client.create_domain(
        DomainName=domain,
        DefaultExpirationDays=366,
        Matching={"Enabled": True},
        RuleBasedMatching={
            "Enabled": True,
            "MatchingRules": [{"Rule": ["EmailAddress", "LastName"]}, {"Rule": ["PhoneNumber"]}],
        },
    )
    for person in PEOPLE:
        client.create_profile(DomainName=domain, **person)
    job = ml_jobs.run_matching_job(live_server.services, domain_name=domain)
    assert job.matches_found == 1

    sign_in(page, live_server, web_users.admin)
    page.goto(f"{live_server.url}/admin/merges")
    page.get_by_role("link", name="Matches", exact=True).click()
    page.get_by_label("Domain").select_option(domain)
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_role("heading", name="Rule-based matches")).to_be_visible()
    screenshot(page, "matches", live_server)

    page.get_by_role("link", name="Explain rule-based match").click()
    expect(page.get_by_role("heading", name="Why these profiles match")).to_be_visible()
    expect(page.get_by_role("main")).to_contain_text("Matched at rule level 1")
    expect(page.get_by_role("main")).to_contain_text("the same EmailAddress AND LastName")
    expect(page.get_by_role("main")).not_to_contain_text("Hamilton")
    page.get_by_role("link", name="Show the matched values").click()
    expect(page.get_by_role("table")).to_contain_text("LastName = Hamilton")

    page.get_by_role("link", name=f"Matches in {domain}").click()
    page.get_by_role("link", name="Explain match group").click()
    expect(page.get_by_role("heading", name="Why these profiles match")).to_be_visible()
    expect(page.get_by_role("main")).to_contain_text(re.compile(r"Confidence score [01]\.\d{4}"))
    pair = page.locator("table.pair")
    expect(pair).to_have_count(1)
    expect(pair.get_by_role("row", name="PhoneNumber")).to_contain_text("Exact match on phone")
    expect(pair.get_by_role("row", name="FirstName")).to_contain_text("Jaro-Winkler")
    expect(page.get_by_role("main")).not_to_contain_text("Hamilton")
    screenshot(page, "match-ml", live_server)
