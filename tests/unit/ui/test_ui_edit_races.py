"""Two agents saving the same field of a profile's edit form at once: the second save is refused
("changed meanwhile") whatever the timing, as it is when they save one after the other. The
check and the write are one step (ui.profile_form.save_edit); each test puts the other agent's
save where it used to slip in between them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from tests.support.backends import postgres_schema_url
from tests.support.lock_waits import second_writer_meets_first
from tests.unit.ingest.conftest import DOMAIN
from tests.unit.ui.test_ui_admin_ops import services_of, signed_in
from tests.unit.ui.test_ui_pages import _FormFields

from openprofiles.context import Services, Tx
from openprofiles.profiles import service as profiles
from openprofiles.settings import Settings

REFUSED = "Someone else changed this field since you opened the form."


@pytest.fixture
def agent(settings: Settings) -> Iterator[TestClient]:
    yield from signed_in(settings, "agent")


@pytest.fixture
def pg_agent(tmp_path: Path) -> Iterator[TestClient]:
    with postgres_schema_url() as url:
        yield from signed_in(Settings(data_dir=tmp_path / "data", database_url=url), "agent")


def _edit_form(client: TestClient) -> tuple[str, str, dict[str, str]]:
    """(profile id, edit address, the form as a browser sends it back) for a new profile whose
    first name is Ada."""
    with services_of(client).write() as tx:
        profile_id = profiles.create_profile(
            tx, domain_name=DOMAIN, fields={"FirstName": "Ada"}
        ).profile_id
    url = f"/agent/domains/{DOMAIN}/profiles/{profile_id}/edit"
    parser = _FormFields()
    parser.feed(client.get(url).text)
    assert parser.fields["FirstName"] == "Ada"
    return profile_id, url, parser.fields


def _other_agent_saves(tx: Tx, profile_id: str) -> None:
    profiles.update_profile(
        tx, domain_name=DOMAIN, profile_id=profile_id, changes={"FirstName": "Ann"}
    )


def _first_name(services: Services, profile_id: str) -> object:
    with services.read() as tx:
        return profiles.get_profile(tx, domain_name=DOMAIN, profile_id=profile_id).fields.get(
            "FirstName"
        )


def test_a_save_committed_after_the_page_read_the_profile_is_not_overwritten(
    agent: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other agent's save commits after the page has read the profile, just before the
    page opens its write transaction (both databases)."""
    services = services_of(agent)
    profile_id, url, form = _edit_form(agent)
    write = services.write

    def other_save_first() -> AbstractContextManager[Tx]:
        monkeypatch.setattr(services, "write", write)  # once
        with write() as tx:
            _other_agent_saves(tx, profile_id)
        return write()

    monkeypatch.setattr(services, "write", other_save_first)

    response = agent.post(url, data={**form, "FirstName": "Bea"})

    assert services.write == write, "the page wrote nothing"
    assert response.status_code == 400 and REFUSED in response.text
    assert _first_name(services, profile_id) == "Ann"


@pytest.mark.postgres
def test_a_save_waits_for_the_other_agents_uncommitted_save_then_is_refused(
    pg_agent: TestClient,
) -> None:
    """PostgreSQL (several server processes): the other agent's save has written and not yet
    committed when this one is posted; this one waits for the profile's row, then sees the
    other's change instead of checking against what was committed before."""
    services = services_of(pg_agent)
    profile_id, url, form = _edit_form(pg_agent)

    def post() -> tuple[int, str]:
        response = pg_agent.post(url, data={**form, "FirstName": "Bea"})
        return response.status_code, response.text

    status, html = second_writer_meets_first(
        services, lambda tx: _other_agent_saves(tx, profile_id), post
    )

    assert status == 400 and REFUSED in html
    assert _first_name(services, profile_id) == "Ann"
