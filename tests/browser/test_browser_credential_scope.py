"""An API credential limited to some domains, made on the credentials page in Chromium against
a live server (both backends): the admin picks the domains by ticking them, the page lists the
key with them, and boto3 signing with the key acts on them and is refused the others."""

from __future__ import annotations

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from playwright.sync_api import Page, expect
from tests.browser.conftest import PASSWORD, WebUsers, sign_in
from tests.browser.test_browser_pages import unique
from tests.support.server import LiveServer

pytestmark = pytest.mark.browser


def test_a_key_limited_to_the_domains_ticked(
    page: Page, live_server: LiveServer, web_users: WebUsers
) -> None:
    admin = live_server.client()
    mine, theirs = unique("mine"), unique("theirs")
    for name in (mine, theirs):
        admin.create_domain(DomainName=name, DefaultExpirationDays=30)
    sign_in(page, live_server, web_users.admin)
    page.goto(f"{live_server.url}/admin/credentials")
    page.get_by_label("Role").select_option("agent")
    page.get_by_label("Only the domains ticked below").check()
    page.get_by_label(mine, exact=True).check()
    page.get_by_label("Your password").fill(PASSWORD)
    page.get_by_role("button", name="Create credential").click()
    key_id = page.locator("#new-access-key-id").inner_text()
    secret = page.locator("#new-secret").inner_text()
    expect(page.locator("#new-scope")).to_have_text(mine)
    row = page.get_by_role("row").filter(has=page.get_by_role("rowheader", name=key_id))
    expect(row.get_by_role("cell", name=mine, exact=True)).to_be_visible()

    client = boto3.client(
        "customer-profiles",
        endpoint_url=live_server.url,
        region_name=live_server.settings.region,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}),
    )
    assert client.get_domain(DomainName=mine)["DomainName"] == mine
    assert [d["DomainName"] for d in client.list_domains()["Items"]] == [mine]
    with pytest.raises(ClientError) as refused:
        client.get_domain(DomainName=theirs)
    assert refused.value.response["Error"]["Code"] == "AccessDeniedException"
