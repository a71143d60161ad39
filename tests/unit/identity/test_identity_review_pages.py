"""Admin pages after the second UI review, through Starlette's TestClient (both backends): the
domain's page shows rule-based and ML matching each on or off (it said "Identity resolution:
Off" while rule-based matching was on), and a match's merge page reached again after its merge
(the browser's Back) says that the profiles were already merged and links the merge, with no
doubled full stop."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html import unescape
from typing import Any

import pytest

from openprofiles.app import create_app
from openprofiles.domains.service import update_domain
from openprofiles.identity import matching
from openprofiles.identity import service as identity
from openprofiles.profiles import service as profiles
from openprofiles.settings import Settings

from .conftest import DOMAIN, make_domain
from .test_identity_admin_pages import signed_in
from .test_identity_match_merge_pages import _confirm_form
from .test_identity_match_pages import RULES, _matched


@pytest.fixture
def app(settings: Settings) -> Iterator[Any]:
    built = create_app(settings.with_overrides(matching_schedule_check_seconds=0))
    make_domain(built.state.services)
    yield built
    built.state.services.database.dispose()


def _pair(page: str, name: str) -> str:
    match = re.search(rf"<dt>{name}</dt><dd>(.*?)</dd>", page, re.S)
    assert match, name
    return re.sub(r"<[^>]+>", "", match.group(1)).strip()


def test_the_domain_page_shows_each_kind_of_matching(app: Any) -> None:
    services = app.state.services
    with services.write() as tx:
        update_domain(tx, domain_name=DOMAIN, changes={"RuleBasedMatching": RULES})
        matching.rebuild(tx, domain_name=DOMAIN)
    with signed_in(app, "boss", "admin") as client:
        page = client.get(f"/admin/domains/{DOMAIN}").text
        assert "Identity resolution" not in page
        assert _pair(page, "Rule-based matching").startswith("On")
        assert _pair(page, "ML matching") == "Off"
        assert f'href="/admin/matches?domain={DOMAIN}"' in page

        with services.write() as tx:
            update_domain(
                tx,
                domain_name=DOMAIN,
                changes={"RuleBasedMatching": {"Enabled": False}, "Matching": {"Enabled": True}},
            )
        page = client.get(f"/admin/domains/{DOMAIN}").text
        assert _pair(page, "Rule-based matching") == "Off"
        assert _pair(page, "ML matching") == "On"


def test_back_after_a_merge_says_the_profiles_were_already_merged(app: Any) -> None:
    services = app.state.services
    rule_id, _, margaret, margret = _matched(services)
    match_page = f"/admin/matches/{DOMAIN}/rule/{rule_id}"
    with signed_in(app, "boss", "admin") as client:
        confirm = client.get(f"{match_page}/merge", params={"main": margaret})
        form = _confirm_form(confirm.text)
        done = client.post(f"{match_page}/merge", data=form)
        assert done.status_code == 303
        with services.read() as tx:
            (merge,) = identity.list_merges(tx, domain_name=DOMAIN)
        merge_page = f"/admin/merges/{DOMAIN}/{merge.merge_id}"
        assert done.headers["location"] == merge_page

        # Back to the confirmation page, and the form sent again from it.
        for again in (
            client.get(f"{match_page}/merge", params={"main": margaret}),
            client.post(f"{match_page}/merge", data=form),
        ):
            assert again.status_code == 409
            text = unescape(re.sub(r"<[^>]+>", "", again.text))
            assert f"Profile {margret} was already merged into {margaret}" in text
            assert f'href="{merge_page}"' in again.text
            assert ".." not in text
        # Nothing was merged twice.
        with services.read() as tx:
            assert len(identity.list_merges(tx, domain_name=DOMAIN)) == 1


def test_a_match_gone_for_another_reason_says_so_once(app: Any) -> None:
    services = app.state.services
    rule_id, _, margaret, margret = _matched(services)
    # The match's other profile deleted, not merged: the match no longer exists (its NotFound
    # is a sentence with its own full stop).
    with services.write() as tx:
        profiles.delete_profile(tx, domain_name=DOMAIN, profile_id=margret)
    with signed_in(app, "boss", "admin") as client:
        gone = client.get(
            f"/admin/matches/{DOMAIN}/rule/{rule_id}/merge", params={"main": margaret}
        )
        assert gone.status_code == 409
        text = unescape(re.sub(r"<[^>]+>", "", gone.text))
        assert "The match has changed since this page was shown" in text
        assert ".." not in text and "already merged" not in text
