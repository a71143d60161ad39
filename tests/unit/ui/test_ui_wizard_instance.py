"""The enable wizard's instance step, for an instance another domain holds: refused at the page's
own "Move" box (not with the command-line option the API's message names), and moved once the
box is ticked."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient
from tests.unit.ui.test_ui_admin_ops import (
    DOMAIN,
    INSTANCE,
    OTHER,
    csrf_of,
    error_at,
    owner,
    signed_in,
)
from tests.unit.ui.test_ui_admin_ops import associate as associate_on_the_instances_page

from openprofiles.settings import Settings


@pytest.fixture
def admin(sqlite_settings: Settings) -> Iterator[TestClient]:
    yield from signed_in(sqlite_settings, "admin")


def _instance_step(client: TestClient, **fields: str) -> tuple[int, str]:
    url = f"/admin/enable/{OTHER}/instance"
    token = csrf_of(client.get(url).text)
    response = client.post(url, data={"csrf_token": token, "instance_arn": INSTANCE, **fields})
    return response.status_code, response.text


def test_an_instance_of_another_domain_is_refused_at_the_move_box(admin: TestClient) -> None:
    assert associate_on_the_instances_page(admin, instance_arn=INSTANCE, domain_name=DOMAIN)[0]
    assert owner(admin) == DOMAIN

    status, html = _instance_step(admin)

    assert status == 400
    message = error_at(html, "move")
    assert f"associated with domain {DOMAIN} now" in message and "Tick the box" in message
    assert "--move" not in html
    assert 'aria-describedby="move-hint move-error"' in html
    assert owner(admin) == DOMAIN

    status, _ = _instance_step(admin, move="yes")
    assert status == 303
    assert owner(admin) == OTHER
