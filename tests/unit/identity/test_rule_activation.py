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


def test_a_staged_pass_catches_up_with_writes_made_while_it_read(services, domain):
    """The pass digests while only reading; profiles created, changed and deleted meanwhile are
    digested again when it writes, so it stores what a pass in one transaction would."""
    from sqlalchemy import select

    from openprofiles.domains.service import update_domain
    from openprofiles.profiles import service as profiles
    from openprofiles.store.schema import rule_match_digest, rule_match_profile

    a = new_profile(services, EmailAddress="x@x.com")
    b = new_profile(services, EmailAddress="x@x.com")
    c = new_profile(services, EmailAddress="y@x.com")
    d = new_profile(services, EmailAddress="z@x.com")
    with services.write() as tx:
        update_domain(
            tx, domain_name=DOMAIN, changes={"RuleBasedMatching": {**RULES, "Status": "PENDING"}}
        )
    with services.pinned() as pinned:
        staged = matching.stage_pass(pinned, domain_name=DOMAIN)
        assert staged is not None and staged.profiles == 4
        # Meanwhile, on other connections: a new profile, a changed one, a deleted one.
        e = new_profile(services, EmailAddress="y@x.com")
        with services.write() as tx:
            profiles.update_profile(
                tx, domain_name=DOMAIN, profile_id=b, changes={"EmailAddress": "w@x.com"}
            )
            profiles.delete_profile(tx, domain_name=DOMAIN, profile_id=d)
        result = matching.finish_pass(pinned, staged, due=lambda tx: True)
    assert result is not None and result.profiles == 4
    assert status(services) == "ACTIVE"

    def stored() -> tuple[set[tuple[Any, ...]], set[tuple[Any, ...]]]:
        with services.read() as tx:
            return (
                {tuple(r) for r in tx.conn.execute(select(rule_match_digest))},
                {tuple(r) for r in tx.conn.execute(select(rule_match_profile))},
            )

    staged_rows = stored()
    with services.write() as tx:
        matching.rebuild(tx, domain_name=DOMAIN)
    assert staged_rows == stored()
    [found] = matches(services)
    with services.read() as tx:
        assert set(matching.get_match(tx, domain_name=DOMAIN, match_id=found).profile_ids) == {
            c,
            e,
        }
    with services.read() as tx:  # b, a's partner, has another email now
        assert matching.profile_match(tx, domain_name=DOMAIN, profile_id=a) is None


def test_a_staged_pass_writes_nothing_when_the_rules_changed_meanwhile(services, domain):
    from openprofiles.domains.service import update_domain

    new_profile(services, EmailAddress="x@x.com")
    new_profile(services, EmailAddress="x@x.com")
    with services.write() as tx:
        update_domain(
            tx, domain_name=DOMAIN, changes={"RuleBasedMatching": {**RULES, "Status": "PENDING"}}
        )
    other = {"Enabled": True, "MatchingRules": [{"Rule": ["LastName"]}], "Status": "PENDING"}
    with services.pinned() as pinned:
        staged = matching.stage_pass(pinned, domain_name=DOMAIN)
        assert staged is not None
        with services.write() as tx:
            update_domain(tx, domain_name=DOMAIN, changes={"RuleBasedMatching": other})
        assert matching.finish_pass(pinned, staged, due=lambda tx: True) is None
    assert status(services) == "PENDING"  # the newer rules' own pass is still to run


def test_a_staged_pass_that_fails_drops_what_it_staged(services, domain):
    from sqlalchemy import inspect

    from openprofiles.domains.service import update_domain

    new_profile(services, EmailAddress="x@x.com")
    with services.write() as tx:
        update_domain(
            tx, domain_name=DOMAIN, changes={"RuleBasedMatching": {**RULES, "Status": "PENDING"}}
        )

    def failing(tx: Any) -> bool:
        raise RuntimeError("the check failed")

    with services.pinned() as pinned:
        with pytest.raises(RuntimeError):
            matching.rebuild_staged(pinned, domain_name=DOMAIN, due=failing)
        with pinned.read() as tx:
            assert not inspect(tx.conn).has_table("rule_match_load")
    assert status(services) == "PENDING"


# ---------------------------------------------------------------------------- rules turned off


def stored_rows(services: Services) -> int:
    from sqlalchemy import func, select

    from openprofiles.store.schema import rule_match_digest, rule_match_profile

    with services.read() as tx:
        return sum(
            tx.conn.execute(
                select(func.count()).select_from(t).where(t.c.domain_name == DOMAIN)
            ).scalar_one()
            for t in (rule_match_digest, rule_match_profile)
        )


def rules_off(services: Services) -> dict[str, Any]:
    ctx = RequestContext(services=services, principal=Principal("test", "admin"))
    return handlers.update_domain(
        ctx, {"DomainName": DOMAIN, "RuleBasedMatching": {**RULES, "Enabled": False}}
    )


def test_a_large_domain_s_digests_go_after_the_request_in_chunks(
    services, domain, large, monkeypatch
):
    for i in range(6):
        new_profile(services, EmailAddress=f"p{i % 3}@x.com")
    update(services)
    assert rule_activation.wait(DOMAIN, timeout=60)
    before = stored_rows(services)
    assert before >= 12  # six digest rows and six packed rows
    monkeypatch.setattr(rule_activation, "CLEAR_CHUNK", 4)  # several transactions
    chunks: list[int] = []
    clear_some = rule_store.clear_some

    def counted(tx: Any, domain_name: str, limit: int) -> int:
        chunks.append(stored_rows(services))  # what the previous transaction left
        return clear_some(tx, domain_name, limit)

    monkeypatch.setattr(rule_store, "clear_some", counted)
    answer = rules_off(services)
    assert answer["RuleBasedMatching"]["Enabled"] is False
    assert rule_activation.wait(DOMAIN, timeout=60)
    assert stored_rows(services) == 0
    assert chunks[0] == before and len(chunks) >= before // 4
    with services.read() as tx:
        rbm = get_domain(tx, domain_name=DOMAIN).config["RuleBasedMatching"]
    assert rule_activation.CLEARING not in rbm
    assert rule_activation.run_pending_passes(services) == []


def test_a_clearing_left_unfinished_is_resumed_and_stops_when_rules_return(services, domain, large):
    a = new_profile(services, EmailAddress="a@x.com")
    b = new_profile(services, EmailAddress="a@x.com")
    update(services)
    assert rule_activation.wait(DOMAIN, timeout=60)
    with services.write() as tx:  # the request's part, and then the process stopped
        from openprofiles.domains.service import update_domain

        update_domain(
            tx, domain_name=DOMAIN, changes={"RuleBasedMatching": {**RULES, "Enabled": False}}
        )
        assert rule_activation.apply_rules(tx, domain_name=DOMAIN)
    assert stored_rows(services) > 0
    # Rules turned on again before any clearing ran: the mark is gone, the clearing does
    # nothing, and the new pass's digests stand.
    update(services)
    assert rule_activation.wait(DOMAIN, timeout=60)
    assert rule_activation.run_pending_pass(services, domain_name=DOMAIN) is False
    [found] = matches(services)
    with services.read() as tx:
        assert set(matching.get_match(tx, domain_name=DOMAIN, match_id=found).profile_ids) == {
            a,
            b,
        }
    # Off again, the process stops before clearing: the periodic check clears.
    with services.write() as tx:
        update_domain(
            tx, domain_name=DOMAIN, changes={"RuleBasedMatching": {**RULES, "Enabled": False}}
        )
        assert rule_activation.apply_rules(tx, domain_name=DOMAIN)
    assert rule_activation.run_pending_passes(services) == [DOMAIN]
    assert stored_rows(services) == 0
