"""The admin merge pages through Starlette's TestClient (both backends): listing, detail, the
undo form with its CSRF and role checks, what the undo kept on the main profile, and an undo
that lost a race running again."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient
from tests.support.lost_races import attempts, deadlock_once_on

from openprofiles.app import create_app
from openprofiles.identity import service
from openprofiles.profiles import service as profiles
from openprofiles.settings import Settings
from openprofiles.users import service as users

from .conftest import fields_of, ingest, make_domain, new_profile

PASSWORD = "long enough password"


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match
    return match.group(1)


def signed_in(app: Any, username: str, role: str) -> TestClient:
    with app.state.services.write() as tx:
        users.create_user(tx, username=username, password=PASSWORD, role=role)
    client = TestClient(app, follow_redirects=False)
    page = client.get("/ui/sign-in")
    client.post(
        "/ui/sign-in",
        data={"username": username, "password": PASSWORD, "csrf_token": csrf_of(page.text)},
    )
    return client


@pytest.fixture
def app(settings: Settings) -> Iterator[Any]:
    built = create_app(settings)
    make_domain(built.state.services)
    yield built
    built.state.services.database.dispose()


def _merge(services: Any) -> tuple[str, str, str, str]:
    first = ingest(services, {"id": "c1", "email": "ada@example.com"})
    second = ingest(services, {"id": "c2", "email": "ada@work.example"})
    with services.write() as tx:
        merge_id = service.merge_profiles(
            tx,
            domain_name="ident",
            main_profile_id=first.profile_id,
            profile_ids=[second.profile_id],
        ).merge_id
    later = ingest(services, {"id": "c3", "email": "ada@work.example"})
    return merge_id, first.profile_id, second.profile_id, later.profile_object_unique_key


def test_list_detail_and_undo(app: Any) -> None:
    services = app.state.services
    merge_id, main, other, later_key = _merge(services)
    with signed_in(app, "boss", "admin") as client:
        listing = client.get("/admin/merges?domain=ident")
        assert listing.status_code == 200
        assert merge_id in listing.text and other in listing.text
        assert 'href="/admin/merges"' in listing.text  # in the admin navigation
        detail = client.get(f"/admin/merges/ident/{merge_id}")
        assert detail.status_code == 200
        assert "ada@work.example" in detail.text
        # Customers' values isolated from the text around them (right-to-left ones).
        assert '<td dir="auto">ada@work.example</td>' in detail.text
        token = csrf_of(detail.text)

        unconfirmed = client.post(
            f"/admin/merges/ident/{merge_id}/undo", data={"csrf_token": token}
        )
        assert unconfirmed.status_code == 400
        assert "confirm" in unconfirmed.text
        forged = client.post(
            f"/admin/merges/ident/{merge_id}/undo", data={"csrf_token": "x", "confirm": "yes"}
        )
        assert forged.status_code == 403
        with services.read() as tx:
            assert service.get_merge(tx, domain_name="ident", merge_id=merge_id).undone_at is None

        done = client.post(
            f"/admin/merges/ident/{merge_id}/undo", data={"csrf_token": token, "confirm": "yes"}
        )
        assert done.status_code == 200
        assert "Undone" in done.text and later_key in done.text
        assert fields_of(services, other) == {"EmailAddress": "ada@work.example"}

        again = client.post(
            f"/admin/merges/ident/{merge_id}/undo", data={"csrf_token": token, "confirm": "yes"}
        )
        assert again.status_code == 400
        assert "already undone" in again.text
        assert client.get("/admin/merges/ident/" + "0" * 32).status_code == 404


def test_the_undo_shows_the_fields_it_put_back(app: Any) -> None:
    services = app.state.services
    main = new_profile(services, FirstName="Jane")
    other = new_profile(services, LastName="Doe")
    with services.write() as tx:
        merge_id = service.merge_profiles(
            tx, domain_name="ident", main_profile_id=main, profile_ids=[other]
        ).merge_id
        profiles.update_profile(
            tx, domain_name="ident", profile_id=main, changes={"LastName": "Doe"}
        )
    with signed_in(app, "boss", "admin") as client:
        token = csrf_of(client.get(f"/admin/merges/ident/{merge_id}").text)
        done = client.post(
            f"/admin/merges/ident/{merge_id}/undo", data={"csrf_token": token, "confirm": "yes"}
        )
    assert done.status_code == 200
    assert "Put back as before the merge" in done.text and "field LastName" in done.text
    assert "The profile was written after the merge" in done.text


@pytest.mark.parametrize("settings", ["postgres"], indirect=True)
def test_an_undo_that_lost_a_race_runs_again(app: Any) -> None:
    services = app.state.services
    merge_id, main, other, _ = _merge(services)
    deadlock_once_on(services, "merge_log")
    with signed_in(app, "boss", "admin") as client:
        token = csrf_of(client.get(f"/admin/merges/ident/{merge_id}").text)
        done = client.post(
            f"/admin/merges/ident/{merge_id}/undo", data={"csrf_token": token, "confirm": "yes"}
        )
    assert done.status_code == 200
    assert "Undone" in done.text
    assert attempts(services) == 2
    assert fields_of(services, other) == {"EmailAddress": "ada@work.example"}


def test_agents_cannot_see_or_undo_merges(app: Any) -> None:
    services = app.state.services
    new_profile(services, FirstName="x")
    merge_id, *_ = _merge(services)
    with signed_in(app, "agent1", "agent") as client:
        page = client.get("/admin/merges")
        assert page.status_code == 403
        token = csrf_of(page.text)  # the sign-out form of the agent's own session
        refused = client.post(
            f"/admin/merges/ident/{merge_id}/undo", data={"csrf_token": token, "confirm": "yes"}
        )
        assert refused.status_code == 403
    with services.read() as tx:
        assert service.get_merge(tx, domain_name="ident", merge_id=merge_id).undone_at is None
