"""The agent and admin pages against WCAG 2.1 A and AA, in Chromium on a live server (both
backends): axe-core finds nothing on each page, its refused forms included; a text box's edge is
seen at 3:1 (WCAG 1.4.11, which axe does not check); and at 320 px wide (a laptop zoomed to
400 %, WCAG 1.4.10) the pages fit without scrolling sideways.

tests/browser/axe is a small npm package: axe-core pinned by its package-lock.json, installed
once per session with `npm ci` (into tests/browser/axe/node_modules, git-ignored) when missing
or older than the lock file (tests.support.npm), as the JavaScript SDK's test installs it. In CI a
missing Node.js or npm fails the run: a skipped check is an unchecked one.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from tests.browser.conftest import WebUsers, sign_in
from tests.browser.test_browser_admin_ops import put_crm_type
from tests.browser.test_browser_matches import PEOPLE
from tests.support.npm import npm_ci, tool
from tests.support.server import LiveServer
from tests.unit.integrations.integ_helpers import ctr
from tests.wire.test_contact_records_http import post
from tests.wire.test_integrations_api import KMS

pytestmark = pytest.mark.browser

AXE_DIR = Path(__file__).with_name("axe")
WCAG_21_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


@pytest.fixture(scope="session")
def axe_source() -> str:
    """axe-core's script, installed as the lock file pins it."""
    npm = tool(
        "npm", "the accessibility check", "the accessibility check installs axe-core with it"
    )
    modules = npm_ci(AXE_DIR, npm)
    return (modules / "axe-core" / "axe.min.js").read_text()


def violations(page: Page, axe_source: str) -> list[str]:
    """What axe finds on the page at WCAG 2.1 A and AA: "rule: element" for each element."""
    # Evaluated, not added as a <script>: the pages' Content-Security-Policy refuses inline ones.
    page.evaluate(axe_source)
    found = page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", WCAG_21_AA
    )
    return [
        f"{rule['id']}: {node['target']} {node['html'][:120]}"
        for rule in found["violations"]
        for node in rule["nodes"]
    ]


@dataclass
class Content:
    """A domain with something on every page: a contact linked to a profile, a record in the
    dead-letter queue, a rule-based match, a merge, an associated instance and a flow."""

    domain: str
    contact_id: str
    profile_id: str


@pytest.fixture(scope="module")
def content(live_server: LiveServer) -> Content:
    client = live_server.client()
    domain = f"a11y-{uuid.uuid4().hex[:8]}"
    instance = f"arn:aws:connect:us-east-1:111122223333:instance/{uuid.uuid4()}"
    client.create_domain(
        DomainName=domain,
        DefaultExpirationDays=366,
        RuleBasedMatching={"Enabled": True, "MatchingRules": [{"Rule": ["EmailAddress"]}]},
    )
    client.put_integration(DomainName=domain, Uri=instance)
    contact_id = f"a11y-{uuid.uuid4().hex[:8]}"
    record = ctr(contact_id, instance=instance, start="2026-01-03T09:00:00Z")
    assert post(live_server, "/contact-records", json.dumps(record)).json()["Accepted"] == 1
    # The contact's record made a profile; it is the one the screen pop opens.
    put_crm_type(client, domain, allow=False)
    # Under DATA_DIR/flows, the folder flows may read when no OPENPROFILES_FLOW_FOLDER_ROOTS.
    folder = live_server.settings.data_dir / "flows" / domain
    client.put_integration(
        DomainName=domain,
        ObjectTypeName="Crm",
        FlowDefinition={
            "FlowName": f"{domain}-crm",
            "KmsArn": KMS,
            "SourceFlowConfig": {
                "ConnectorType": "S3",
                "SourceConnectorProperties": {
                    "S3": {"BucketName": "file://", "BucketPrefix": str(folder)}
                },
            },
            "Tasks": [],
            "TriggerConfig": {"TriggerType": "OnDemand"},
        },
    )
    lost = {"id": f"crm-{uuid.uuid4().hex[:6]}", "email": "nobody@example.com", "first": "N"}
    client.put_profile_object(DomainName=domain, ObjectTypeName="Crm", Object=json.dumps(lost))
    for person in PEOPLE:
        client.create_profile(DomainName=domain, **person)
    main = client.create_profile(DomainName=domain, FirstName="Ada", LastName="Lovelace")
    merged = client.create_profile(DomainName=domain, FirstName="Ada", LastName="Lovelace")
    client.merge_profiles(
        DomainName=domain,
        MainProfileId=main["ProfileId"],
        ProfileIdsToBeMerged=[merged["ProfileId"]],
    )
    return Content(domain=domain, contact_id=contact_id, profile_id=main["ProfileId"])


def click(page: Page, name: str) -> None:
    page.get_by_role("button", name=name, exact=True).last.click()
    page.wait_for_load_state()


def test_agent_pages_meet_wcag_21_aa(
    page: Page,
    live_server: LiveServer,
    web_users: WebUsers,
    content: Content,
    axe_source: str,
) -> None:
    found: dict[str, list[str]] = {}
    base = f"{live_server.url}/agent/domains/{content.domain}"

    def check(name: str) -> None:
        found[name] = violations(page, axe_source)

    page.goto(f"{live_server.url}/ui/sign-in")
    check("sign in")
    page.get_by_label("Username").fill(web_users.agent)
    page.get_by_label("Password").fill("not the password")
    click(page, "Sign in")
    expect(page.get_by_role("alert")).to_be_visible()
    check("sign in, refused")
    sign_in(page, live_server, web_users.agent)
    page.goto(f"{live_server.url}/agent/")
    check("agent home")
    page.goto(base)
    check("search")
    page.get_by_label("Search customers").fill("margaret.hamilton@example.com")
    click(page, "Search")
    expect(page.get_by_role("table")).to_be_visible()
    check("search results")
    page.get_by_label("Search customers").fill("no.one@example.com")
    click(page, "Search")
    check("search, nothing found")
    page.goto(f"{live_server.url}/agent/contacts/{content.contact_id}")
    expect(page.get_by_role("heading", name="Contact history and records")).to_be_visible()
    check("profile with contacts (screen pop)")
    page.get_by_role("link", name="Open record 1").click()
    page.wait_for_load_state()
    check("contact record")
    # The whole record, folded under the contact's details: opened, it is scrolled sideways
    # from the keyboard, so in the tab order, and named.
    page.get_by_text("The whole record, as JSON").click()
    region = page.get_by_role("region", name="The whole record, as JSON")
    expect(region).to_have_attribute("tabindex", "0")
    check("contact record, JSON open")
    page.goto(f"{live_server.url}/agent/contacts/{uuid.uuid4()}")
    check("screen pop, no profile linked")
    page.goto(f"{base}/profiles/{content.profile_id}/edit")
    check("edit profile")
    page.goto(f"{base}/profiles/new")
    check("create profile")
    page.get_by_label("Email address", exact=True).fill("not an email")
    click(page, "Create profile")
    expect(page.get_by_role("alert")).to_be_visible()
    check("create profile, refused")
    page.goto(f"{live_server.url}/ui/password")
    check("password")
    click(page, "Change password")
    check("password, refused")
    page.goto(f"{live_server.url}/agent/no-such-page")
    check("page not found")
    assert {name: rules for name, rules in found.items() if rules} == {}


def test_admin_pages_meet_wcag_21_aa(
    page: Page,
    live_server: LiveServer,
    web_users: WebUsers,
    content: Content,
    axe_source: str,
) -> None:
    found: dict[str, list[str]] = {}
    admin = f"{live_server.url}/admin"
    domain = content.domain

    def check(name: str) -> None:
        found[name] = violations(page, axe_source)

    def open_first(link_in: str, name: str) -> None:
        page.locator(link_in).first.click()
        page.wait_for_load_state()
        check(name)

    sign_in(page, live_server, web_users.admin)
    for path in (
        "/domains",
        f"/domains/{domain}",
        "/enable",
        "/dlq",
        "/integrations",
        f"/domains/{domain}/integrations",
        "/instances",
        "/credentials",
        "/users",
    ):
        page.goto(admin + path)
        check(path)
    page.goto(admin + "/credentials")
    # Some domains chosen, none ticked: refused, the choice marked invalid.
    page.get_by_label("Only the domains ticked below").check()
    click(page, "Create credential")
    expect(page.locator('[id="scope-error"]')).to_be_visible()
    check("/credentials, refused")
    page.goto(admin + "/users")
    click(page, "Create user")
    check("/users, refused")
    page.get_by_role("link", name=f"Manage user {web_users.agent}").click()
    page.wait_for_load_state()
    check("user")
    page.goto(admin + "/users")
    page.get_by_role("link", name=f"Delete user {web_users.agent}").click()
    page.wait_for_load_state()
    check("user, delete")
    page.goto(f"{admin}/domains/{domain}/integrations")
    # The flow's row, with its button to run it now.
    expect(page.locator("main table tbody").get_by_role("button")).to_have_count(1)
    open_first("main a.danger", "integration, delete")
    page.goto(admin + "/enable")
    click(page, "Submit")
    expect(page.get_by_role("alert")).to_be_visible()
    check("/enable, refused")
    page.goto(admin + "/instances")
    click(page, "Associate instance")
    check("/instances, refused")
    page.goto(f"{admin}/domains/{domain}/dlq")
    check("dead-letter queue")
    open_first("table.dlq tbody a", "dead-letter record")
    expect(page.get_by_role("region", name="Original record")).to_have_attribute("tabindex", "0")
    page.goto(f"{admin}/domains/{domain}/dlq/purge")
    check("dead-letter queue, purge")
    page.goto(f"{admin}/matches?domain={domain}")
    check("matches")
    open_first("main table tbody th a", "rule-based match")
    page.goto(f"{admin}/merges?domain={domain}")
    check("merges")
    open_first("main table tbody a", "merge")
    assert {name: rules for name, rules in found.items() if rules} == {}


def _contrast(page: Page, selector: str) -> float:
    """The contrast of the first such element's edge against what is behind it (its nearest
    ancestor with a background colour), as WCAG computes it from the two luminances."""
    return float(
        page.locator(selector).first.evaluate(
            """element => {
                const rgb = text => text.match(/[\\d.]+/g).slice(0, 3).map(Number);
                const luminance = ([r, g, b]) => {
                    const linear = c => {
                        c /= 255;
                        return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
                    };
                    return 0.2126 * linear(r) + 0.7152 * linear(g) + 0.0722 * linear(b);
                };
                let behind = element.parentElement;
                while (getComputedStyle(behind).backgroundColor === 'rgba(0, 0, 0, 0)') {
                    behind = behind.parentElement;
                }
                const edge = luminance(rgb(getComputedStyle(element).borderTopColor));
                const back = luminance(rgb(getComputedStyle(behind).backgroundColor));
                return (Math.max(edge, back) + 0.05) / (Math.min(edge, back) + 0.05);
            }"""
        )
    )


def test_text_boxes_and_lists_are_seen_by_their_edge(
    page: Page, live_server: LiveServer, web_users: WebUsers, content: Content
) -> None:
    """An empty text box is seen only by its edge: at least 3:1 (WCAG 1.4.11)."""
    page.goto(f"{live_server.url}/ui/sign-in")
    assert _contrast(page, "#username") >= 3
    sign_in(page, live_server, web_users.agent)
    page.goto(f"{live_server.url}/agent/domains/{content.domain}")
    for selector in ("#q", "#key", "#custom_key"):
        assert _contrast(page, selector) >= 3, selector
    page.goto(f"{live_server.url}/agent/domains/{content.domain}/profiles/new")
    for selector in ("main input[type=text]", "main select", "main textarea"):
        assert _contrast(page, selector) >= 3, selector


@pytest.mark.parametrize(
    ("role", "path"),
    [
        ("agent", "/agent/domains/{domain}/profiles/{profile}"),
        ("agent", "/agent/domains/{domain}/profiles/{profile}/edit"),
        ("agent", "/agent/domains/{domain}/profiles/new"),
        ("admin", "/admin/users"),
    ],
)
def test_pages_fit_a_narrow_window_without_scrolling_sideways(
    page: Page,
    live_server: LiveServer,
    web_users: WebUsers,
    content: Content,
    role: str,
    path: str,
) -> None:
    """320 px wide is a 1280 px window zoomed to 400 % (WCAG 1.4.10): no column is wider."""
    sign_in(page, live_server, web_users.admin if role == "admin" else web_users.agent)
    page.set_viewport_size({"width": 320, "height": 640})
    page.goto(live_server.url + path.format(domain=content.domain, profile=content.profile_id))
    wide, window = page.evaluate("() => [document.documentElement.scrollWidth, innerWidth]")
    assert wide <= window
