"""UpdateDomain at the same time as another UpdateDomain, or as a rule pass, on PostgreSQL: each
keeps what the other wrote. UpdateDomain read the domain's settings unlocked, merged its changes
and wrote the whole config back, so under READ COMMITTED one that read before the other writer
committed wrote the other's settings away: a second UpdateDomain's, or the rules' Status and
DigestFormat a rule pass (identity.rule_activation) had just written, leaving them PENDING for a
pass to run again. SQLite's one writer serialises them already: these tests are PostgreSQL's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.lock_waits import (
    in_its_own_transaction,
    postgres_services,
    second_writer_meets_first,
)
from tests.unit.integrations.integ_helpers import make_domain

from openprofiles.context import Services, Tx
from openprofiles.domains.service import get_domain, update_domain
from openprofiles.identity import matching, rule_activation
from openprofiles.identity.rule_digests import FORMAT

D = "updated"
QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/profiles-dlq"
RULES = {"Enabled": True, "MatchingRules": [{"Rule": ["EmailAddress"]}]}


@pytest.fixture
def pg_services(tmp_path: Path) -> Iterator[Services]:
    with postgres_services(tmp_path) as services:
        yield services


def config_of(services: Services) -> dict[str, Any]:
    with services.read() as tx:
        return get_domain(tx, domain_name=D).config


@pytest.mark.postgres
def test_two_update_domain_calls_at_once_keep_both_settings(pg_services: Services) -> None:
    services = pg_services
    make_domain(services, D)

    outcome = second_writer_meets_first(
        services,
        lambda tx: update_domain(tx, domain_name=D, changes={"DefaultExpirationDays": 99}),
        in_its_own_transaction(
            services,
            lambda tx: update_domain(tx, domain_name=D, changes={"DeadLetterQueueUrl": QUEUE}),
        ),
    )

    assert not isinstance(outcome, BaseException), outcome
    # The second answers what it left: the first's setting too.
    assert outcome.config["DefaultExpirationDays"] == 99
    config = config_of(services)
    assert config["DefaultExpirationDays"] == 99
    assert config["DeadLetterQueueUrl"] == QUEUE


@pytest.mark.postgres
def test_an_update_domain_during_a_rule_pass_keeps_the_rules_active(
    pg_services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pass's write transaction (locked as rule_activation locks it, then the pass) commits
    while an UpdateDomain of another setting waits: the rules stay ACTIVE, with the digests'
    format, and the other setting is changed."""
    services = pg_services
    make_domain(services, D)
    # Every domain's pass runs after the request: the rules are left PENDING for it.
    monkeypatch.setattr(rule_activation, "BACKGROUND_FROM", 0)
    with services.write() as tx:
        update_domain(tx, domain_name=D, changes={"RuleBasedMatching": RULES})
        assert rule_activation.apply_rules(tx, domain_name=D)
    assert config_of(services)["RuleBasedMatching"]["Status"] == "PENDING"

    def rule_pass(tx: Tx) -> None:
        assert rule_activation._pending(tx, D)
        matching.rebuild(tx, domain_name=D)

    outcome = second_writer_meets_first(
        services,
        rule_pass,
        in_its_own_transaction(
            services,
            lambda tx: update_domain(tx, domain_name=D, changes={"DefaultExpirationDays": 7}),
        ),
    )

    assert not isinstance(outcome, BaseException), outcome
    config = config_of(services)
    assert config["DefaultExpirationDays"] == 7
    assert config["RuleBasedMatching"]["Status"] == "ACTIVE"
    assert config["RuleBasedMatching"]["DigestFormat"] == FORMAT
