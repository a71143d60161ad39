"""Merging a match from its admin page in Chromium against a live server (both backends): an
administrator opens a rule-based match, reviews the merge (names, no values), merges, lands on
the merge's page in the merge log, and undoes it there."""

from __future__ import annotations

import re
import uuid

import pytest
from playwright.sync_api import Page, expect
from tests.browser.conftest import WebUsers, screenshot, sign_in
from tests.browser.test_browser_matches import PEOPLE
from tests.support.server import LiveServer

pytestmark = pytest.mark.browser


def test_admin_merges_a_match_and_undoes_it(
    page: Page, live_server: LiveServer, web_users: WebUsers
) -> None:
    client = live_server.client()
    domain = f"merge-{uuid.uuid4().hex[:8]}"
    client.create_domain(
        DomainName=domain,
        DefaultExpirationDays=366,
        RuleBasedMatching={"Enabled": True, "MatchingRules": [{"Rule": ["EmailAddress"]}]},
    )
    first, second = (
        client.create_profile(DomainName=domain, **person)["ProfileId"] for person in PEOPLE[:2]
    )

    sign_in(page, live_server, web_users.admin)
    page.goto(f"{live_server.url}/admin/matches?domain={domain}")
    page.get_by_role("link", name="Explain rule-based match").click()
    # The profile updated last is chosen; the administrator keeps the first instead.
    expect(page.get_by_role("radio", name=second)).to_be_checked()
    page.get_by_role("radio", name=first).check()
    page.get_by_role("button", name="Review the merge").click()

    expect(page.get_by_role("heading", name="Merge the profiles of a match")).to_be_visible()
    main = page.get_by_role("main")
    expect(main).to_contain_text("can be undone")
    expect(main).not_to_contain_text("Hamilton")
    expect(page.get_by_role("table", name="The merged profile's fields")).to_contain_text(
        "FirstName"
    )
    screenshot(page, "match-merge", live_server)
    page.get_by_role("button", name="Merge 2 profiles into one").click()

    expect(page).to_have_url(re.compile(rf"/admin/merges/{domain}/[0-9a-f]{{32}}$"))
    expect(page.get_by_role("status")).to_contain_text(f"Merged 2 profiles into {first}")
    found = client.search_profiles(
        DomainName=domain, KeyName="_email", Values=["margaret.hamilton@example.com"]
    )
    assert [p["ProfileId"] for p in found["Items"]] == [first]

    page.get_by_label("Split the merged profiles off again").check()
    page.get_by_role("button", name="Undo merge").click()
    expect(page.get_by_role("heading", name=re.compile("^Undone"))).to_be_visible()
    found = client.search_profiles(
        DomainName=domain, KeyName="_email", Values=["margaret.hamilton@example.com"]
    )
    assert sorted(p["ProfileId"] for p in found["Items"]) == sorted([first, second])
