"""New rules on a large domain take effect right after the request (identity.rule_activation):
UpdateDomain answers with the rules PENDING, the pass runs on a thread and leaves them ACTIVE,
and a pass a stopped process left PENDING is run by the server's periodic check. Real SQLite
and PostgreSQL; the size from which a pass runs later is lowered to this test's domain."""

from __future__ import annotations

from typing import Any

import pytest

from openprofiles.context import Principal, RequestContext, Services
from openprofiles.domains import handlers
from openprofiles.domains.service import get_domain
from openprofiles.identity import matching, rule_activation, rule_store
from openprofiles.identity.rule_digests import FORMAT

from .conftest import DOMAIN, new_profile

RULES = {"Enabled": True, "MatchingRules": [{"Rule": ["EmailAddress"]}]}


@pytest.fixture
def large(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rule_activation, "BACKGROUND_FROM", 2)


def status(services: Services) -> Any:
    with services.read() as tx:
        return get_domain(tx, domain_name=DOMAIN).config["RuleBasedMatching"].get("Status")


def matches(services: Services) -> list[str]:
    with services.read() as tx:
        return matching.list_matches(tx, domain_name=DOMAIN)[0]


def update(services: Services) -> dict[str, Any]:
    ctx = RequestContext(services=services, principal=Principal("test", "admin"))
    return handlers.update_domain(ctx, {"DomainName": DOMAIN, "RuleBasedMatching": RULES})


def test_a_small_domain_gets_its_rules_active_within_the_request(services, domain):
    new_profile(services, EmailAddress="a@x.com")
    assert update(services)["RuleBasedMatching"]["Status"] == "ACTIVE"


def test_a_large_domain_gets_its_rules_pending_then_active(services, domain, large):
    a = new_profile(services, EmailAddress="a@x.com")
    b = new_profile(services, EmailAddress="A@x.com")
    new_profile(services, EmailAddress="c@x.com")
    answer = update(services)
    assert answer["RuleBasedMatching"]["Status"] == "PENDING"
    assert rule_activation.wait(DOMAIN, timeout=60)
    assert status(services) == "ACTIVE"
    [found] = matches(services)
    with services.read() as tx:
        assert set(matching.get_match(tx, domain_name=DOMAIN, match_id=found).profile_ids) == {
            a,
            b,
        }
    # Nothing left to do: the periodic check finds no pending rules.
    assert rule_activation.run_pending_passes(services) == []


def test_a_pass_left_pending_is_run_by_the_periodic_check(services, domain, large):
    a = new_profile(services, EmailAddress="a@x.com")
    b = new_profile(services, EmailAddress="a@x.com")
    with services.write() as tx:  # the request's part, and then the process stopped
        from openprofiles.domains.service import update_domain

        update_domain(tx, domain_name=DOMAIN, changes={"RuleBasedMatching": RULES})
        assert rule_activation.apply_rules(tx, domain_name=DOMAIN)
    assert status(services) == "PENDING"
    assert rule_activation.run_pending_passes(services) == [DOMAIN]
    assert status(services) == "ACTIVE"
    [found] = matches(services)
    with services.read() as tx:
        assert set(matching.get_match(tx, domain_name=DOMAIN, match_id=found).profile_ids) == {
            a,
            b,
        }
    assert rule_activation.run_pending_pass(services, domain_name=DOMAIN) is False


def test_digests_of_an_older_version_are_made_again_by_the_periodic_check(services, domain):
    """After an upgrade that compares a value otherwise (birth dates as calendar dates), the
    first check passes every domain with rules again."""
    rules = {"Enabled": True, "MatchingRules": [{"Rule": ["LastName", "BirthDate"]}]}
    a = new_profile(services, LastName="Doe", BirthDate="2001-03-02")
    with services.write() as tx:
        from openprofiles.domains.service import update_domain

        update_domain(tx, domain_name=DOMAIN, changes={"RuleBasedMatching": rules})
        matching.rebuild(tx, domain_name=DOMAIN)
        current = get_domain(tx, domain_name=DOMAIN).config["RuleBasedMatching"]
        assert current["DigestFormat"] == FORMAT
        # As an earlier version left it: no format recorded, and digests that match nothing
        # written now (here: none at all).
        update_domain(
            tx,
            domain_name=DOMAIN,
            changes={"RuleBasedMatching": {**rules, "Status": "ACTIVE"}},
        )
        rule_store.forget(tx, DOMAIN, [a])
    assert rule_activation.run_pending_passes(services) == [DOMAIN]
    b = new_profile(services, LastName="Doe", BirthDate="03/02/2001")
    [found] = matches(services)
    with services.read() as tx:
        assert set(matching.get_match(tx, domain_name=DOMAIN, match_id=found).profile_ids) == {
            a,
            b,
        }
    assert status(services) == "ACTIVE"
    assert rule_activation.run_pending_passes(services) == []
