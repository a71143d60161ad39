"""When new rules take effect: within the request for a small domain, right after it for a
large one.

A full rule pass (matching.rebuild) takes about 50 µs a profile: a second at 20,000 profiles,
most of a minute at 1,000,000. A request that long is a poor API call: boto3 stops reading after
60 seconds and sends the request again, which would start another pass. So CreateDomain or
UpdateDomain enabling rules on a domain of `BACKGROUND_FROM` live profiles or more commits them
with Status PENDING (the cloud service's status for rules not yet applied) and answers; the
pass then runs on a thread of this server process and leaves the rules ACTIVE. Meanwhile writes
already keep digests under the new rules, and ListRuleBasedMatches lists what is stored.

The pass reads and digests the profiles without holding the writer (SQLite has one, for every
domain), then catches up with the profiles written meanwhile and writes in a transaction of its
own (matching.rebuild_staged): other writes wait for that part only, about 10 s of a 47 s pass
at 1,000,000 profiles.

A pass that did not finish (the process stopped, the pass failed) leaves the rules PENDING; the
server's periodic check (`run_pending_passes`, with the matching schedule check, and once at
start-up) runs it again. The same check passes again a domain whose digests were made by an
older version, one that compared some value otherwise (`rule_digests.FORMAT`, stored on the
rules by each pass): after an upgrade, the first check brings every domain's digests up to
date. So does it a domain whose rules were enabled without MatchingRules before there were
default rules (enabled, no Status: never passed).

Two processes that both find a domain PENDING take turns: a pass re-reads the status in its own
write transaction (the domain row locked on PostgreSQL; SQLite has one writer), so the second
finds the rules ACTIVE and does nothing.

Turning a large domain's rules off is quick the same way: deleting its digests took 9.5 s at
1,000,000 profiles (4.6 million rows), all of it holding the writer. The request marks the
digests to clear (`CLEARING` on the rules, not an API member) and they are deleted after it,
`CLEAR_CHUNK` rows a write transaction, each checking under the domain's row lock that the
rules are still off: rules turned on again meanwhile replace the mark, and their pass clears
what is left. Nothing reads digests while rules are off (ListRuleBasedMatches refuses, writes
keep none), and the periodic check resumes a clearing a stopped process left.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from sqlalchemy import select

from openprofiles.context import Services, Tx
from openprofiles.domains.models import DomainRecord
from openprofiles.domains.service import find_domain, list_domains, update_domain
from openprofiles.identity import matching, rule_store
from openprofiles.identity.rule_digests import FORMAT
from openprofiles.store.schema import domain

logger = logging.getLogger(__name__)

# Live profiles from which a pass runs after the request (about 2.5 s of pass).
BACKGROUND_FROM = 50_000
PENDING = "PENDING"
# On rules turned off whose digests are still to delete (internal, not an API member).
CLEARING = "DigestsToClear"
# Stored rows deleted per write transaction while clearing: a fraction of a second each.
CLEAR_CHUNK = 50_000

_threads: dict[str, threading.Thread] = {}
_threads_lock = threading.Lock()


def apply_rules(tx: Tx, *, domain_name: str) -> bool:
    """Apply the domain's new RuleBasedMatching in the request's transaction: the full pass (or,
    rules off, the clearing of the digests) now, or marked for after the commit (then True:
    `start` it): rules PENDING, digests CLEARING."""
    if matching.live_count(tx, domain_name) < BACKGROUND_FROM:
        matching.rebuild(tx, domain_name=domain_name)
        return False
    record = find_domain(tx, domain_name=domain_name)
    assert record is not None
    rbm = dict(record.config["RuleBasedMatching"])
    if matching.rule_config(record.config) is None:
        rbm[CLEARING] = True
    else:
        rbm["Status"] = PENDING
    update_domain(tx, domain_name=domain_name, changes={"RuleBasedMatching": rbm})
    return True


def start(services: Services, *, domain_name: str) -> None:
    """Run the domain's pending pass on a thread of its own (after the request committed)."""
    thread = threading.Thread(
        target=run_pending_pass,
        args=(services,),
        kwargs={"domain_name": domain_name},
        name=f"rule-pass-{domain_name}",
        daemon=True,
    )
    with _threads_lock:
        _threads[domain_name] = thread
    thread.start()


def wait(domain_name: str, timeout: float | None = None) -> bool:
    """Block until the pass `start` began for the domain in this process has ended; False when
    it is still running after `timeout` seconds. For the benchmark and tests."""
    with _threads_lock:
        thread = _threads.get(domain_name)
    if thread is None:
        return True
    thread.join(timeout)
    return not thread.is_alive()


def run_pending_pass(services: Services, *, domain_name: str) -> bool:
    """Run the domain's full pass if its rules are still PENDING (or their digests outdated);
    True when it ran. A failure is logged (its type only) and leaves the rules as they were
    for the next check."""
    try:
        with services.read() as tx:
            record = find_domain(tx, domain_name=domain_name)
            if record is None or not _due(record.config):
                return False
        if _clearing(record.config):
            return _clear(services, domain_name)
        # Digested while only reading; the writer is held for the writing (matching).
        with services.pinned() as pinned:
            result = matching.rebuild_staged(
                pinned, domain_name=domain_name, due=lambda tx: _pending(tx, domain_name)
            )
        return result is not None
    except Exception as exc:
        logger.error(
            "rule pass of domain %s failed (%s); the rules stay PENDING and are retried",
            domain_name,
            type(exc).__name__,
        )
        return False


def run_pending_passes(services: Services) -> list[str]:
    """The server's periodic check: run the pass of every domain whose rules are PENDING (a pass
    that did not finish) or whose digests are outdated. Returns the domains whose pass ran."""
    due: list[str] = []
    after = None
    with services.read() as tx:
        while True:
            records, more = list_domains(tx, after=after, limit=100)
            due += [r.name for r in records if _due(r.config)]
            if not more:
                break
            after = records[-1].name
    return [name for name in due if run_pending_pass(services, domain_name=name)]


def _clear(services: Services, domain_name: str) -> bool:
    """Delete the digests of rules turned off, a chunk per write transaction, while the rules
    stay off; True when it ran to the end (the mark removed with the last rows)."""
    while True:
        with services.write() as tx:
            record = _locked(tx, domain_name)
            if record is None or not _clearing(record.config):
                return False  # rules on again (their pass clears) or the domain deleted
            if rule_store.clear_some(tx, domain_name, CLEAR_CHUNK):
                continue
            rbm = dict(record.config["RuleBasedMatching"])
            del rbm[CLEARING]
            update_domain(tx, domain_name=domain_name, changes={"RuleBasedMatching": rbm})
            return True


def _locked(tx: Tx, domain_name: str) -> DomainRecord | None:
    # Locks the domain row on PostgreSQL until the transaction commits (SQLite has one writer
    # anyway), so an UpdateDomain of the rules waits for it.
    tx.conn.execute(select(domain.c.name).where(domain.c.name == domain_name).with_for_update())
    return find_domain(tx, domain_name=domain_name)


def _pending(tx: Tx, domain_name: str) -> bool:
    record = _locked(tx, domain_name)
    return record is not None and _due(record.config) and not _clearing(record.config)


def _clearing(config: dict[str, Any]) -> bool:
    """Rules off whose digests are still to delete."""
    rbm = config.get("RuleBasedMatching") or {}
    return bool(rbm.get(CLEARING)) and matching.rule_config(config) is None


def _due(config: dict[str, Any]) -> bool:
    """Rules PENDING, ACTIVE on digests an older version made, enabled but never passed, or off
    with digests to clear."""
    if _clearing(config):
        return True
    status = _status(config)
    if status == PENDING:
        return True
    rbm = config.get("RuleBasedMatching") or {}
    if rbm.get("Enabled") and status is None:
        # Enabled without MatchingRules by a version that had no default rules
        # (matching.DEFAULT_MATCHING_RULES): never passed, so no Status and no digests.
        return True
    return bool(rbm.get("Enabled")) and status == "ACTIVE" and rbm.get("DigestFormat") != FORMAT


def _status(config: dict[str, Any]) -> str | None:
    rbm = config.get("RuleBasedMatching") or {}
    status = rbm.get("Status")
    return status if isinstance(status, str) else None
