"""The contact-record template chosen where the admin pages associate an instance (the enable
wizard's instance step, the instances page): the chosen template is the integration's
ObjectTypeName, none chosen is `CTR` (the API's default), and a value the page does not offer is
refused at the field with nothing associated. Before, both pages always associated `CTR`, which
never finds a profile made by the API, an agent or a CRM."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

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

WIZARD = f"/admin/enable/{OTHER}/instance"
INSTANCES = "/admin/instances"


@pytest.fixture
def admin(settings: Settings) -> Iterator[TestClient]:
    yield from signed_in(settings, "admin")


def _on_the_wizard(client: TestClient, **fields: str) -> tuple[int, str]:
    token = csrf_of(client.get(WIZARD).text)
    response = client.post(WIZARD, data={"csrf_token": token, "instance_arn": INSTANCE, **fields})
    return response.status_code, response.text


def _on_the_instances_page(client: TestClient, **fields: str) -> tuple[int, str]:
    token = csrf_of(client.get(INSTANCES).text)
    response = client.post(
        INSTANCES,
        data={"csrf_token": token, "instance_arn": INSTANCE, "domain_name": DOMAIN, **fields},
    )
    return response.status_code, response.text


# (page, how it associates, the status of a page that associated)
PAGES = [
    pytest.param(WIZARD, _on_the_wizard, 303, id="wizard"),
    pytest.param(INSTANCES, _on_the_instances_page, 200, id="instances-page"),
]
Associate = Callable[..., tuple[int, str]]


def _template(client: TestClient) -> str | None:
    with services_of(client).read() as tx:
        found = integrations.find_instance_integration(tx, instance_arn=INSTANCE)
    return found.object_type_name if found else None


def _checked(html: str) -> list[str]:
    return re.findall(r'name="object_type_name" value="([^"]+)" checked', html)


@pytest.mark.parametrize(("page", "associate", "status"), PAGES)
def test_the_chosen_template_is_the_integrations_object_type(
    admin: TestClient, page: str, associate: Associate, status: int
) -> None:
    associated, html = associate(admin, object_type_name="CTR-NoInferred")

    assert associated == status
    assert _template(admin) == "CTR-NoInferred"
    # Each page's report of the association names the template.
    done = admin.get(f"/admin/enable/{OTHER}/done").text if page == WIZARD else html
    assert "ingested as <code>CTR-NoInferred</code>" in done


@pytest.mark.parametrize(("page", "associate", "status"), PAGES)
def test_the_default_stays_ctr(
    admin: TestClient, page: str, associate: Associate, status: int
) -> None:
    html = admin.get(page).text
    # A group with a legend; each option described by its own hint.
    assert "<legend>Contact-record template</legend>" in html
    assert _checked(html) == ["CTR"]
    for option_id in ("object_type_name", "object_type_name-2", "object_type_name-3"):
        assert f'id="{option_id}" name="object_type_name"' in html
        assert f'aria-describedby="{option_id}-option-hint"' in html
    assert "gets a second profile on their first contact" in html
    assert "never creates one" in html

    # Left out of the form (a script's post), as the page's checked default.
    assert associate(admin)[0] == status
    assert _template(admin) == "CTR"


@pytest.mark.parametrize(("page", "associate", "status"), PAGES)
@pytest.mark.parametrize("unknown", ["ctr-noinferred", "Salesforce-Account", "CTR_NoInferred"])
def test_an_unknown_template_is_refused_at_the_field(
    admin: TestClient, page: str, associate: Associate, status: int, unknown: str
) -> None:
    refused, html = associate(admin, object_type_name=unknown)

    assert refused == 400
    assert "Choose one of the templates" in error_at(html, "object_type_name")
    assert 'href="#object_type_name">Contact-record template: ' in html
    assert (
        'aria-describedby="object_type_name-error object_type_name-option-hint" aria-invalid="true"'
    ) in html
    assert owner(admin) is None


def test_change_the_domain_starts_with_the_instances_template(admin: TestClient) -> None:
    assert _on_the_instances_page(admin, object_type_name="CTR-AutoAssociateOnly")[0] == 200

    prefilled = admin.get(INSTANCES, params={"instance": INSTANCE}).text

    assert _checked(prefilled) == ["CTR-AutoAssociateOnly"]


def test_the_wizard_again_does_not_quietly_replace_the_instance_s_template(
    admin: TestClient,
) -> None:
    """The wizard's step run again for an instance of its domain (to send on kept records) posts
    the page's default: it would have switched a CTR-NoInferred instance back to CTR, storing
    its next records apart from those already stored."""
    assert _on_the_wizard(admin, object_type_name="CTR-NoInferred")[0] == 303

    refused, html = _on_the_wizard(admin)
    assert refused == 400
    assert "its records ingested as CTR-NoInferred" in error_at(html, "object_type_name")
    assert _template(admin) == "CTR-NoInferred"
    # Chosen again as it is, the step goes through.
    assert _on_the_wizard(admin, object_type_name="CTR-NoInferred")[0] == 303
    assert _template(admin) == "CTR-NoInferred"
