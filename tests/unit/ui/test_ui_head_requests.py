"""HEAD on a page answers as its GET does. Pages that take GET and POST told the two apart by
the method, so HEAD (which Starlette routes to every GET endpoint) went down the POST branch
without a form: a 500 and an error logged, for any signed-in user."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient
from tests.unit.ingest.conftest import DOMAIN
from tests.unit.ui.test_ui_admin_ops import signed_in

from openprofiles.app import create_app
from openprofiles.settings import Settings

NO_SUCH_PROFILE = "0" * 32
AGENT_PAGES = [
    "/ui/password",
    f"/agent/domains/{DOMAIN}",
    f"/agent/domains/{DOMAIN}/profiles/new",
    f"/agent/domains/{DOMAIN}/profiles/{NO_SUCH_PROFILE}/edit",
]
ADMIN_PAGES = [
    "/admin/enable",
    f"/admin/domains/{DOMAIN}/dlq/purge",
    f"/admin/domains/{DOMAIN}/integrations/delete?uri=nothing",
    "/admin/users/nobody/delete",
    "/admin/credentials/AKIANOTAKEY00000000/delete",
]


@pytest.fixture
def admin(sqlite_settings: Settings) -> Iterator[TestClient]:
    yield from signed_in(sqlite_settings, "admin")


@pytest.mark.parametrize("path", AGENT_PAGES + ADMIN_PAGES)
def test_head_answers_as_get(admin: TestClient, path: str) -> None:
    get = admin.get(path)
    head = admin.head(path)
    assert get.status_code < 500, get.text
    assert head.status_code == get.status_code
    assert head.headers["content-type"] == get.headers["content-type"]


def test_head_on_the_sign_in_page_answers_as_get(sqlite_settings: Settings) -> None:
    """It was taken for a sign-in attempt without a form: 403, "the form had expired"."""
    app = create_app(sqlite_settings)
    try:
        with TestClient(app, follow_redirects=False) as anonymous:
            assert anonymous.get("/ui/sign-in").status_code == 200
            assert anonymous.head("/ui/sign-in").status_code == 200
    finally:
        app.state.services.database.dispose()
