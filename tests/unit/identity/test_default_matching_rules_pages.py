"""The admin match pages on a domain whose rule-based matching is enabled without MatchingRules
(both backends): the default rules (identity.matching.DEFAULT_MATCHING_RULES) are listed and
explained like rules the administrator wrote; and a domain enabled so by a version without
default rules is passed by the periodic check."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from openprofiles.app import create_app
from openprofiles.domains.service import get_domain, update_domain
from openprofiles.identity import explain, matching, rule_activation
from openprofiles.settings import Settings

from .conftest import DOMAIN, make_domain, new_profile
from .test_identity_admin_pages import signed_in


@pytest.fixture
def app(settings: Settings) -> Iterator[Any]:
    built = create_app(settings.with_overrides(matching_schedule_check_seconds=0))
    make_domain(built.state.services)
    yield built
    built.state.services.database.dispose()


def test_default_rules_on_the_match_pages(app: Any) -> None:
    services = app.state.services
    with services.write() as tx:
        update_domain(tx, domain_name=DOMAIN, changes={"RuleBasedMatching": {"Enabled": True}})
        matching.rebuild(tx, domain_name=DOMAIN)
    first = new_profile(services, PhoneNumber="+1 206 555 0100")
    second = new_profile(services, PhoneNumber="+12065550100")
    with services.read() as tx:
        (found,), _ = explain.rule_matches(tx, domain_name=DOMAIN, limit=10)
    with signed_in(app, "boss", "admin") as client:
        listing = client.get(f"/admin/matches?domain={DOMAIN}")
        assert listing.status_code == 200
        assert "Rule-based matching is not enabled" not in listing.text
        assert f"/admin/matches/{DOMAIN}/rule/{found.match_id}" in listing.text
        page = client.get(f"/admin/matches/{DOMAIN}/rule/{found.match_id}")
        assert page.status_code == 200
        assert "rule level 2" in page.text
        assert "<strong>PhoneNumber</strong>" in page.text
        assert first in page.text and second in page.text


def test_rules_enabled_before_there_were_defaults_are_passed_by_the_periodic_check(
    services: Any, domain: str
) -> None:
    """A domain enabled without MatchingRules by an earlier version has no Status and no
    digests; the first periodic check (also run at start-up) passes it."""
    a = new_profile(services, EmailAddress="same@x.com")
    b = new_profile(services, EmailAddress="same@x.com")
    with services.write() as tx:
        update_domain(tx, domain_name=DOMAIN, changes={"RuleBasedMatching": {"Enabled": True}})
    assert rule_activation.run_pending_passes(services) == [DOMAIN]
    with services.read() as tx:
        rbm = get_domain(tx, domain_name=DOMAIN).config["RuleBasedMatching"]
        (found,), _ = matching.list_matches(tx, domain_name=DOMAIN)
        assert set(matching.get_match(tx, domain_name=DOMAIN, match_id=found).profile_ids) == {
            a,
            b,
        }
    assert rbm["Status"] == "ACTIVE"
    assert "MatchingRules" not in rbm
    assert rule_activation.run_pending_passes(services) == []
