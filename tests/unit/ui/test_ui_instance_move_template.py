"""Moving an instance from the instances page's blank form (not "Change the domain") through
Starlette's TestClient (both backends): the form offers the default template (CTR), which a
move used to take, silently changing how the new domain finds the callers of an instance that
used CTR-NoInferred. Now a move with a template other than the instance's is refused at the
field, nothing moved, and the page shown again has the instance's template chosen."""

from __future__ import annotations

import re
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
    services_of,
    signed_in,
)

from openprofiles.integrations import service as integrations
from openprofiles.settings import Settings

INSTANCES = "/admin/instances"


@pytest.fixture
def admin(settings: Settings) -> Iterator[TestClient]:
    yield from signed_in(settings, "admin")


def _post(client: TestClient, **fields: str) -> tuple[int, str]:
    token = csrf_of(client.get(INSTANCES).text)
    response = client.post(
        INSTANCES, data={"csrf_token": token, "instance_arn": INSTANCE, **fields}
    )
    return response.status_code, response.text


def _template(client: TestClient) -> str | None:
    with services_of(client).read() as tx:
        found = integrations.find_instance_integration(tx, instance_arn=INSTANCE)
    return found.object_type_name if found else None


def _checked(html: str) -> list[str]:
    return re.findall(r'name="object_type_name" value="([^"]+)" checked', html)


def test_a_move_from_the_blank_form_keeps_the_instances_template(admin: TestClient) -> None:
    status, _ = _post(admin, domain_name=DOMAIN, object_type_name="CTR-NoInferred")
    assert status == 200 and _template(admin) == "CTR-NoInferred"

    # The blank form, as the browser sends it: CTR (its default) chosen, the box not ticked.
    status, html = _post(admin, domain_name=OTHER, object_type_name="CTR")
    assert status == 400 and owner(admin) == DOMAIN
    assert "Tick the box" in error_at(html, "move")
    assert _checked(html) == ["CTR-NoInferred"]

    # The box ticked, CTR still chosen: refused at the template, nothing moved.
    status, html = _post(admin, domain_name=OTHER, object_type_name="CTR", move="yes")
    assert status == 400
    assert owner(admin) == DOMAIN and _template(admin) == "CTR-NoInferred"
    assert "ingested as CTR-NoInferred now" in error_at(html, "object_type_name")
    assert _checked(html) == ["CTR-NoInferred"]

    # With its own template, it moves as it is.
    status, _ = _post(admin, domain_name=OTHER, object_type_name="CTR-NoInferred", move="yes")
    assert status == 200
    assert owner(admin) == OTHER and _template(admin) == "CTR-NoInferred"
