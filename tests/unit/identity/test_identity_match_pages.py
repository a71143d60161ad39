"""The admin pages that explain matches, through Starlette's TestClient (both backends): the
list of a domain's rule-based matches and ML match groups, a rule-based match's level and
attributes (values only when asked for, like the CLI's --show-values), an ML group's attributes,
comparison levels, weights and confidence score (never values), and the errors and role check."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any

import pytest

from openprofiles.app import create_app
from openprofiles.domains.service import update_domain
from openprofiles.identity import explain, matching, ml_jobs
from openprofiles.settings import Settings

from .conftest import DOMAIN, make_domain, new_profile
from .test_identity_admin_pages import signed_in
from .test_identity_ml import DUPLICATES, PEOPLE

RULES = {
    "Enabled": True,
    "MatchingRules": [{"Rule": ["EmailAddress", "LastName"]}, {"Rule": ["PhoneNumber"]}],
}


@pytest.fixture
def app(settings: Settings) -> Iterator[Any]:
    # No background scheduler: the test runs the one job it looks at.
    built = create_app(settings.with_overrides(matching_schedule_check_seconds=0))
    make_domain(built.state.services)
    yield built
    built.state.services.database.dispose()


def _matched(services: Any) -> tuple[str, str, str, str]:
    """A domain with both kinds of matching and one match of each: the rule-based match's id,
    the ML group's id, and the Margaret/Margret profile ids."""
    with services.write() as tx:
        update_domain(
            tx,
            domain_name=DOMAIN,
            changes={"RuleBasedMatching": RULES, "Matching": {"Enabled": True}},
        )
        matching.rebuild(tx, domain_name=DOMAIN)
    margaret = new_profile(services, **PEOPLE[0])
    margret = new_profile(services, **DUPLICATES[0])
    new_profile(services, **PEOPLE[1])
    ml_jobs.run_matching_job(services, domain_name=DOMAIN)
    with services.read() as tx:
        (rule_match,), _ = explain.rule_matches(tx, domain_name=DOMAIN, limit=10)
        (group,) = ml_jobs.list_groups(tx, domain_name=DOMAIN).groups
    return rule_match.match_id, group.match_id, margaret, margret


def test_list_and_explain_both_kinds(app: Any) -> None:
    rule_id, ml_id, margaret, margret = _matched(app.state.services)
    with signed_in(app, "boss", "admin") as client:
        listing = client.get(f"/admin/matches?domain={DOMAIN}")
        assert listing.status_code == 200
        assert f"/admin/matches/{DOMAIN}/rule/{rule_id}" in listing.text
        assert f"/admin/matches/{DOMAIN}/ml/{ml_id}" in listing.text
        # Emails compare without case, so level 1 holds before level 2 (PhoneNumber) is tried.
        assert "<td>EmailAddress AND LastName</td>" in listing.text
        assert 'href="/admin/matches"' in listing.text  # in the admin navigation
        merges = client.get(f"/admin/merges?domain={DOMAIN}")
        assert f'href="/admin/matches?domain={DOMAIN}"' in merges.text

        rule = client.get(f"/admin/matches/{DOMAIN}/rule/{rule_id}")
        assert rule.status_code == 200
        assert "rule level 1" in rule.text
        assert "<strong>EmailAddress</strong> AND <strong>LastName</strong>" in rule.text
        assert margaret in rule.text and margret in rule.text
        # Like the CLI, no value unless asked for.
        assert "hamilton" not in rule.text.casefold()
        assert "Show the matched values" in rule.text
        shown = client.get(f"/admin/matches/{DOMAIN}/rule/{rule_id}?values=1")
        # Each value isolated from the text around it (a right-to-left one would reorder it).
        assert "EmailAddress = <bdi>margaret.hamilton@example.com</bdi>" in shown.text
        assert "EmailAddress = <bdi>Margaret.Hamilton@Example.com</bdi>" in shown.text
        assert "LastName = <bdi>Hamilton</bdi>" in shown.text

        ml = client.get(f"/admin/matches/{DOMAIN}/ml/{ml_id}")
        assert ml.status_code == 200
    with app.state.services.read() as tx:
        group = explain.explain_ml_match(tx, domain_name=DOMAIN, match_id=ml_id).group
    assert f"Confidence score {group.confidence:.4f}" in ml.text
    (pair,) = group.explanation
    for attribute in pair["Attributes"]:
        assert f'<th scope="row">{attribute["Attribute"]}</th>' in ml.text
        assert f"{attribute['MatchWeight']:+.2f}" in ml.text
        assert html.escape(attribute["Level"]) in ml.text
    # The ML explanation holds no value: none of the two profiles' values is on the page
    # (ids, random hex, are left out of the search: they could hold "555" by chance).
    shown_text = re.sub(r"[0-9a-f]{32}", "", ml.text.casefold())
    for value in ("Hamilton", "Margaret", "1936", "555", "02139", "example.com", "Boston"):
        assert value.casefold() not in shown_text


def test_domains_without_matching_and_errors(app: Any) -> None:
    services = app.state.services
    with signed_in(app, "boss", "admin") as client:
        page = client.get(f"/admin/matches?domain={DOMAIN}")
        assert page.status_code == 200
        assert "Rule-based matching is not enabled" in page.text
        assert "Machine-learning matching is not enabled" in page.text
        assert client.get("/admin/matches?domain=nosuch").status_code == 404
        _matched(services)
        assert client.get(f"/admin/matches/{DOMAIN}/ml/{'0' * 32}").status_code == 404
        assert client.get(f"/admin/matches/{DOMAIN}/rule/{'01' + '0' * 32}").status_code == 404
        assert client.get(f"/admin/matches/{DOMAIN}/rule/not-a-match").status_code == 400


def test_agents_cannot_see_matches(app: Any) -> None:
    rule_id, ml_id, *_ = _matched(app.state.services)
    with signed_in(app, "agent1", "agent") as client:
        for path in (
            f"/admin/matches?domain={DOMAIN}",
            f"/admin/matches/{DOMAIN}/rule/{rule_id}?values=1",
            f"/admin/matches/{DOMAIN}/ml/{ml_id}",
        ):
            assert client.get(path).status_code == 403
