"""What the admin pages say "Run now" reads, as `run_flow` reads it: every item of an OnDemand
flow or of a Scheduled one with DataPullMode Complete; of another flow the items new or changed,
and what failed items left unapplied.

The page said failed items were read "once its cause is fixed" (a run reads them whether it is
or not) and that other flows' runs read only new or changed items (a Scheduled Complete flow's
reads every item)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient
from tests.unit.ingest.conftest import DOMAIN
from tests.unit.ui.test_ui_admin_ops import signed_in

from openprofiles.settings import Settings


@pytest.fixture
def admin(settings: Settings) -> Iterator[TestClient]:
    yield from signed_in(settings, "admin")


def test_the_integrations_page_says_what_run_now_reads(admin: TestClient) -> None:
    page = admin.get(f"/admin/domains/{DOMAIN}/integrations")
    assert page.status_code == 200
    found = re.search(r'<p class="lead">(.*?)</p>', page.text, re.S)
    assert found is not None
    lead = " ".join(found.group(1).split())
    assert "once its cause is fixed" not in lead
    assert (
        "every item of an OnDemand flow, or of a Scheduled one with DataPullMode Complete" in lead
    )
    assert "what failed items left unapplied" in lead
