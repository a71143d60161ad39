"""The full rule pass's digesting (identity.rule_pass): worker processes give what this process
gives, and a worker that dies costs speed, not the pass."""

from __future__ import annotations

import os

from openprofiles.crypto.domain_keys import DomainCipher
from openprofiles.identity import rule_pass
from openprofiles.identity.matching import rule_config
from openprofiles.identity.rule_digests import DigestPlan, unpack
from openprofiles.profiles.models import PROFILE_TABLE

CIPHER = DomainCipher(os.urandom(32), "d1")
RULES = rule_config(
    {
        "RuleBasedMatching": {
            "Enabled": True,
            "MatchingRules": [{"Rule": ["EmailAddress", "LastName"]}, {"Rule": ["PhoneNumber"]}],
        }
    }
)
assert RULES is not None
PLAN = DigestPlan(RULES)


def sealed_profiles(count: int) -> list[tuple[str, bytes]]:
    out = []
    for i in range(count):
        fields = {"LastName": f"Doe{i % 7}", "EmailAddress": f"p{i % 11}@x.com"}
        if i % 3:
            fields["PhoneNumber"] = f"+1 206 555 {i % 50:04d}"
        profile_id = f"{i:032x}"
        out.append((profile_id, CIPHER.seal_record(PROFILE_TABLE, profile_id, {"fields": fields})))
    return out


def _die(chunk: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    os._exit(3)


def test_worker_processes_digest_as_this_process_does():
    profiles = sealed_profiles(4_500)  # three chunks: workers take them in turn
    here = list(rule_pass.digest_profiles(CIPHER, PLAN, "US", profiles, 0))
    packed = [p for chunk in here for p in chunk.packed]
    assert [pid for pid, _ in packed] == [pid for pid, _ in profiles]
    # Each profile's pairs, packed in order.
    for (pid, value), (_, sealed) in zip(packed, profiles, strict=True):
        fields = CIPHER.open_record(PROFILE_TABLE, pid, sealed)["fields"]
        assert unpack(value) == sorted(PLAN.digests(CIPHER.digest, fields, "US"))
    assert list(rule_pass.digest_profiles(CIPHER, PLAN, "US", profiles, 2)) == here


def test_a_worker_that_dies_leaves_the_pass_to_this_process(monkeypatch, caplog):
    profiles = sealed_profiles(4_500)
    here = list(rule_pass.digest_profiles(CIPHER, PLAN, "US", profiles, 0))
    # The workers look the task up by name in this test module, and it ends their process.
    monkeypatch.setattr(rule_pass, "_digest_chunk", _die)
    assert list(rule_pass.digest_profiles(CIPHER, PLAN, "US", profiles, 2)) == here
    assert "digesting in this process" in caplog.text


def test_small_domains_are_digested_in_this_process():
    assert rule_pass.processes_for(None, rule_pass.PARALLEL_FROM - 1) == 0
    assert rule_pass.processes_for(3, rule_pass.PARALLEL_FROM) == 3
    assert rule_pass.processes_for(0, 10 * rule_pass.PARALLEL_FROM) == 0
    assert rule_pass.processes_for(None, rule_pass.PARALLEL_FROM) == (os.cpu_count() or 1)
