"""Merging a match's profiles from its admin page, through Starlette's TestClient (both
backends): choose the profile kept, review the merge on its confirmation page (names only, values
when asked for), send it (CSRF-checked, audited) and land on the merge's page in the merge log,
where its undo is; the API then finds one profile. A match that changed since it was reviewed, a
merged profile over the size limit, a forged form and an agent are refused with nothing
merged."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from starlette.testclient import TestClient

from openprofiles import audit
from openprofiles.app import create_app
from openprofiles.auth.credentials import create_credential
from openprofiles.context import Services
from openprofiles.domains.service import update_domain
from openprofiles.identity import explain, matching, service
from openprofiles.profiles import service as profiles
from openprofiles.profiles.size import MAX_PROFILE_BYTES
from openprofiles.settings import Settings

from .conftest import DOMAIN, make_domain, new_profile
from .test_identity_admin_pages import csrf_of, signed_in
from .test_identity_match_pages import RULES, _matched
from .test_identity_ml import DUPLICATES, PEOPLE

EMAIL = "margaret.hamilton@example.com"


@pytest.fixture
def app(settings: Settings) -> Iterator[Any]:
    # No background scheduler: the tests run the one job they look at.
    built = create_app(settings.with_overrides(matching_schedule_check_seconds=0))
    make_domain(built.state.services)
    yield built
    built.state.services.database.dispose()


def _rules_on(services: Services) -> None:
    with services.write() as tx:
        update_domain(tx, domain_name=DOMAIN, changes={"RuleBasedMatching": RULES})
        matching.rebuild(tx, domain_name=DOMAIN)


def _rule_match(services: Services) -> str:
    with services.read() as tx:
        (match,), _ = explain.rule_matches(tx, domain_name=DOMAIN, limit=10)
    return match.match_id


def _merges(services: Services) -> list[Any]:
    with services.read() as tx:
        return service.list_merges(tx, domain_name=DOMAIN)


def _live(services: Services, profile_id: str) -> bool:
    with services.read() as tx:
        return profiles.find_profile(tx, domain_name=DOMAIN, profile_id=profile_id) is not None


def _confirm_form(page: str) -> dict[str, Any]:
    """The fields of the confirmation page's merge form, as the browser sends them."""
    (form,) = re.findall(r'<form method="post".*?</form>', page, re.S)
    return {
        "csrf_token": csrf_of(form),
        "main": re.search(r'name="main" value="([^"]+)"', form).group(1),  # type: ignore[union-attr]
        "profile_id": re.findall(r'name="profile_id" value="([^"]+)"', form),
    }


def _search(client: TestClient, key: str, value: str) -> httpx.Response:
    """SearchProfiles through the API, signed with an admin credential."""
    services = client.app.state.services  # type: ignore[attr-defined]
    with services.write() as tx:
        issued = create_credential(tx, role="admin")
    body = json.dumps({"KeyName": key, "Values": [value]}).encode()
    url = f"http://testserver/domains/{DOMAIN}/profiles/search"
    request = AWSRequest(
        method="POST", url=url, data=body, headers={"Content-Type": "application/json"}
    )
    credentials = Credentials(issued.access_key_id, issued.secret_access_key)
    SigV4Auth(credentials, "profile", services.settings.region).add_auth(request)
    return client.post(url, content=body, headers=dict(request.headers.items()))


def test_merge_a_rule_match_from_its_page(app: Any, caplog: pytest.LogCaptureFixture) -> None:
    services = app.state.services
    rule_id, _, margaret, margret = _matched(services)
    match_page = f"/admin/matches/{DOMAIN}/rule/{rule_id}"
    with signed_in(app, "boss", "admin") as client:
        page = client.get(match_page)
        assert page.status_code == 200
        # The default is the profile an automatic merge keeps: the one updated last.
        assert f'name="main" value="{margret}" checked' in page.text
        assert f'name="main" value="{margaret}">' in page.text
        assert f'action="{match_page}/merge"' in page.text

        confirm = client.get(f"{match_page}/merge", params={"main": margaret})
        assert confirm.status_code == 200
        assert "can be undone" in confirm.text and "merge log" in confirm.text
        # Which profile goes into which, and the names of the fields, but no value.
        assert f'name="main" value="{margaret}"' in confirm.text
        assert f'name="profile_id" value="{margret}"' in confirm.text
        assert '<th scope="row">LastName</th>' in confirm.text
        assert "hamilton" not in confirm.text.casefold()
        # Reviewing merged nothing.
        assert _merges(services) == [] and _live(services, margret)

        caplog.set_level(logging.INFO, logger=audit.logger.name)
        done = client.post(f"{match_page}/merge", data=_confirm_form(confirm.text))
        assert done.status_code == 303
        (merge,) = _merges(services)
        assert (merge.main_profile_id, merge.merged_profile_ids) == (margaret, (margret,))
        assert done.headers["location"] == f"/admin/merges/{DOMAIN}/{merge.merge_id}"
        # Audited as every POST of the pages is: the route, the user's audit name, the status.
        lines = [r.getMessage() for r in caplog.records if r.name == audit.logger.name]
        assert any(
            line.startswith(f"ui POST /admin/matches/{DOMAIN}/rule/") and "status=303" in line
            for line in lines
        )

        merged_page = client.get(done.headers["location"])
        assert "Merged 2 profiles into" in merged_page.text
        assert "Undo merge" in merged_page.text
        # Said once: not again on reload.
        assert "Merged 2 profiles into" not in client.get(done.headers["location"]).text
        listing = client.get(f"/admin/merges?domain={DOMAIN}")
        assert merge.merge_id in listing.text and margret in listing.text

        # The API finds one profile for the customer, the kept one, also by the merged id.
        for key, value in (("_email", EMAIL), ("_profileId", margret)):
            found = _search(client, key, value)
            assert found.status_code == 200, found.text
            assert [p["ProfileId"] for p in found.json()["Items"]] == [margaret]
        # The match is gone: nothing left to merge.
        assert client.get(match_page).status_code == 404


def test_the_confirmation_opens_values_only_when_asked(app: Any) -> None:
    rule_id, _, margaret, margret = _matched(app.state.services)
    with signed_in(app, "boss", "admin") as client:
        # Asked for on the match's page, they are asked for on the confirmation too.
        page = client.get(f"/admin/matches/{DOMAIN}/rule/{rule_id}?values=1")
        assert '<input type="hidden" name="values" value="1">' in page.text
        shown = client.get(
            f"/admin/matches/{DOMAIN}/rule/{rule_id}/merge",
            params={"main": margret, "values": "1"},
        )
        assert shown.status_code == 200
        # The kept profile's value wins; a field's source is named.
        assert '<td dir="auto">Margret</td>' in shown.text
        assert '<td dir="auto">Hamilton</td>' in shown.text
        assert margaret in shown.text
        assert "Hide the values" in shown.text


def test_a_forged_form_or_an_agent_merges_nothing(app: Any) -> None:
    services = app.state.services
    rule_id, ml_id, margaret, margret = _matched(services)
    form = {"main": margaret, "profile_id": [margret]}
    with signed_in(app, "boss", "admin") as client:
        refused = client.post(
            f"/admin/matches/{DOMAIN}/rule/{rule_id}/merge", data={**form, "csrf_token": "x"}
        )
        assert refused.status_code == 403
        assert "This form has expired" in refused.text
        no_token = client.post(f"/admin/matches/{DOMAIN}/rule/{rule_id}/merge", data=form)
        assert no_token.status_code == 403
    with signed_in(app, "agent1", "agent") as agent:
        token = csrf_of(agent.get("/agent").text)
        for kind, match_id in (("rule", rule_id), ("ml", ml_id)):
            path = f"/admin/matches/{DOMAIN}/{kind}/{match_id}/merge"
            assert agent.get(path, params={"main": margaret}).status_code == 403
            assert agent.post(path, data={**form, "csrf_token": token}).status_code == 403
    assert _merges(services) == []
    assert _live(services, margaret) and _live(services, margret)


def test_a_match_changed_since_its_review_is_refused_with_nothing_merged(app: Any) -> None:
    services = app.state.services
    _rules_on(services)
    first = new_profile(services, **PEOPLE[0])
    second = new_profile(services, **DUPLICATES[0])
    third = new_profile(services, FirstName="Meg", LastName="Hamilton", EmailAddress=EMAIL)
    rule_id = _rule_match(services)
    path = f"/admin/matches/{DOMAIN}/rule/{rule_id}/merge"
    with signed_in(app, "boss", "admin") as client:
        confirm = client.get(path, params={"main": first})
        assert confirm.status_code == 200
        form = _confirm_form(confirm.text)
        assert sorted(form["profile_id"]) == sorted([second, third])
        # Meanwhile an operator merged the third profile (MergeProfiles).
        with services.write() as tx:
            service.merge_profiles(
                tx, domain_name=DOMAIN, main_profile_id=second, profile_ids=[third]
            )
        stale = client.post(path, data=form)
        assert stale.status_code == 409
        assert "The match has changed since this page was shown" in stale.text
        assert f"{third} is no longer among its profiles" in stale.text
        assert "Nothing was merged" in stale.text
        assert len(_merges(services)) == 1
        assert _live(services, first) and _live(services, second)

        # A profile of a match of two deleted: the match is gone.
        confirm = client.get(path, params={"main": first})
        form = _confirm_form(confirm.text)
        with services.write() as tx:
            profiles.delete_profile(tx, domain_name=DOMAIN, profile_id=second)
        # (Deleting the main profile of that merge erased its log.)
        logged = len(_merges(services))
        gone = client.post(path, data=form)
        assert gone.status_code == 409
        assert f"The match {rule_id} does not exist" in gone.text
        assert len(_merges(services)) == logged and _live(services, first)
        # So is its review.
        again = client.get(path, params={"main": first})
        assert again.status_code == 409 and "Nothing was merged" in again.text


def test_a_merged_profile_over_the_size_limit_is_refused(app: Any) -> None:
    services = app.state.services
    _rules_on(services)
    half = MAX_PROFILE_BYTES * 3 // 5
    first = new_profile(services, **PEOPLE[0], Attributes={"n1": "a" * half})
    second = new_profile(services, **DUPLICATES[0], Attributes={"n2": "b" * half})
    path = f"/admin/matches/{DOMAIN}/rule/{_rule_match(services)}/merge"
    with signed_in(app, "boss", "admin") as client:
        review = client.get(path, params={"main": first})
        assert review.status_code == 400
        assert "These profiles cannot be merged" in review.text
        assert "over the limit" in review.text
        assert 'name="profile_id"' not in review.text  # nothing to confirm
        token = csrf_of(client.get(f"/admin/merges?domain={DOMAIN}").text)
        sent = client.post(path, data={"csrf_token": token, "main": first, "profile_id": [second]})
        assert sent.status_code == 400
        assert "over the limit" in sent.text and "Nothing was merged" in sent.text
    assert _merges(services) == []
    assert _live(services, first) and _live(services, second)


def test_merge_an_ml_group_from_its_page(app: Any) -> None:
    services = app.state.services
    _, ml_id, margaret, margret = _matched(services)
    group_page = f"/admin/matches/{DOMAIN}/ml/{ml_id}"
    with signed_in(app, "boss", "admin") as client:
        page = client.get(group_page)
        assert f'name="main" value="{margret}" checked' in page.text
        confirm = client.get(f"{group_page}/merge", params={"main": margret})
        assert confirm.status_code == 200
        done = client.post(f"{group_page}/merge", data=_confirm_form(confirm.text))
        assert done.status_code == 303
        (merge,) = _merges(services)
        assert (merge.main_profile_id, merge.merged_profile_ids) == (margret, (margaret,))
        # The group stays until the next job, with one profile left: nothing to merge.
        after = client.get(group_page)
        assert after.status_code == 200
        assert "Nothing to merge" in after.text
        stale = client.post(f"{group_page}/merge", data=_confirm_form(confirm.text))
        assert stale.status_code == 409 and "Nothing was merged" in stale.text
    assert len(_merges(services)) == 1
