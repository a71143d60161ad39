"""Rule-based matching (`RuleBasedMatching`, spec §5.1): match digests, match groups, auto-merge.

For every live profile and every rule level up to MaxAllowedRuleLevelForMatching, the profile
gets one keyed HMAC digest per combination of its normalised values for the level's attributes
(never the values themselves): `rule_digests` computes them, `rule_store` keeps them. Profiles
sharing a digest at a level match at that level. `AttributeTypesSelector` decides which
sub-types (BusinessEmailAddress, ...) stand for EmailAddress, PhoneNumber and Address:
ONE_TO_ONE tags each digest with the sub-types it was built from, so only the same sub-type
compares; MANY_TO_MANY leaves the tag out, so any selected sub-type compares with any other.

A profile's match group is the group of the lowest level at which it shares a digest with
another live profile. Groups are computed when read, from the digests of live profiles, so a
merged-away or deleted profile drops out of every group without bookkeeping. MatchIds are the
level and the digest in hex: stable, and they carry no personal data.

Digests are maintained in the transaction of the write (`profiles.service.on_profile_written`),
and rebuilt for the whole domain when the rules change (CreateDomain/UpdateDomain carrying
RuleBasedMatching): in that request for a small domain, right after it for a large one
(`rule_activation`); a large domain's profiles are digested by worker processes (`rule_pass`)
and written in index order (`rule_store.BulkLoad`). Unlike the cloud service there is no
PENDING hour: the rules are ACTIVE when the request returns, or seconds to a minute later.

Auto-merge (MaxAllowedRuleLevelForMerging) goes through identity.service.merge_profiles, so every
automatic merge is logged and can be undone. Profiles separated by an undo are never put in one
profile again by an automatic merge (`merge_group`, which rule passes and matching jobs use too),
whichever profile it merges into and however many merges apart; an operator's MergeProfiles may.
On PostgreSQL a write that may auto-merge locks the digests of the merging levels it adds
(`_lock_digests`) before it counts their groups: a transaction sees only committed digests, so
two profiles given the same values at once would each find itself alone; the second now waits
for the first, sees its digest, and merges. It locks the rows of its group before the digests
(the order store.advisory sets), and decides on the group as it is once everything is locked
(`_lock_group`): a member that left the group, or was merged or deleted, while the write
waited is not merged.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, select, tuple_
from sqlalchemy.exc import DBAPIError

from openprofiles.context import PinnedServices, Tx
from openprofiles.crypto.blind_index import DIGEST_SIZE
from openprofiles.crypto.domain_keys import DomainCipher
from openprofiles.domains.models import DomainRecord
from openprofiles.domains.service import (
    find_domain,
    get_domain,
    register_domain_table,
    update_domain,
)
from openprofiles.errors import BadRequest, NotFound
from openprofiles.identity import rule_pass, rule_store
from openprofiles.identity.rule_digests import FORMAT as DIGEST_FORMAT
from openprofiles.identity.rule_digests import SUB_TYPE_FIELDS, address_part, plan_for
from openprofiles.profiles import service as profiles
from openprofiles.profiles.models import PROFILE_FIELDS, ProfileRecord, unit_members
from openprofiles.profiles.size import ProfileTooLarge
from openprofiles.store.advisory import take_locks
from openprofiles.store.conflicts import ConcurrentChange, is_lock_unavailable
from openprofiles.store.in_lists import in_chunks
from openprofiles.store.schema import (
    kept_apart,
    merge_log,
    profile,
    rule_match_digest,
    rule_match_profile,
)

logger = logging.getLogger(__name__)

MATCH_TYPE = "RULE_BASED_MATCHING"
# The low-cardinality guard (spec §5.1): a digest shared by more profiles than this is not used.
GUARD_LIMIT = 500
GUARD_MESSAGE = "All attributes at rule level {level} are associated with more than 500 records."
GUARD_OBJECT_TYPE = "RuleBasedMatching"
GUARD_CATEGORY = "rule_matching"
# The guard's dead letter is a notice, not a record: `dlq retry` leaves it alone, saying this.
GUARD_NOT_RETRYABLE = (
    "This dead letter is a notice of rule-based matching (its low-cardinality guard), not a "
    "record: a retry cannot ingest it. Rules on attributes that many profiles share match "
    "nothing at that level; change the domain's MatchingRules if need be, then purge this dead "
    "letter."
)
MAX_MERGE_CHUNK = 20
# Rounds of merges an automatic merge on write (`_merge_until_settled`), and a full pass
# (`_merge_chosen_groups`), make one after the other: each round merges groups that formed from
# the survivors of the one before, so more than one per rule level is rare.
MAX_SETTLE_ROUNDS = 30

register_domain_table(rule_match_digest)
register_domain_table(rule_match_profile)

# A type the selector does not list stands for its same-named sub-type only.
_DEFAULT_SUB_TYPES = {
    "EmailAddress": ("EmailAddress",),
    "PhoneNumber": ("PhoneNumber",),
    "Address": ("Address",),
}

# Set while an automatic merge runs: the writes it makes must not start another one.
_merging: ContextVar[bool] = ContextVar("openprofiles_rule_merging", default=False)


@dataclass(frozen=True)
class RuleConfig:
    levels: tuple[tuple[str, ...], ...]
    max_matching: int
    max_merging: int
    one_to_one: bool
    sub_types: dict[str, tuple[str, ...]]
    conflict: str
    source_name: str | None


@dataclass(frozen=True)
class RuleMatch:
    match_id: str
    level: int
    attributes: tuple[str, ...]
    profile_ids: tuple[str, ...]


@dataclass(frozen=True)
class RebuildResult:
    profiles: int
    digests: int
    merges: int
    guarded_levels: tuple[int, ...]


# ---------------------------------------------------------------------------- configuration


# The rule set used when RuleBasedMatching is enabled without MatchingRules. The cloud service
# has a default rule set whose contents it does not document (spec §5.1); this is ours. Each
# level is an attribute (or set) that on its own says "the same person" with few false matches,
# the strongest first, so a profile joins the group of the most telling value it shares:
# 1 the email address, 2 the phone number (both normalised, as the sub-types the selector
# chooses), 3 the full name with the birth date, 4 the full name with the street address and
# postal code of one address. A name alone, a city or a gender is left out: shared by too
# many people to mean one. It is never written to the domain nor echoed by GetDomain: the
# caller did not send it, and a Terraform or CloudFormation configuration without
# matching_rules must read back no MatchingRules, or every plan would show a change.
DEFAULT_MATCHING_RULES: tuple[tuple[str, ...], ...] = (
    ("EmailAddress",),
    ("PhoneNumber",),
    ("FirstName", "LastName", "BirthDate"),
    ("FirstName", "LastName", "Address.Address", "Address.PostalCode"),
)


def rule_config(config: dict[str, Any]) -> RuleConfig | None:
    """The domain's enabled rules (DEFAULT_MATCHING_RULES when it names none), or None when
    rule-based matching is off."""
    rbm = config.get("RuleBasedMatching") or {}
    if not rbm.get("Enabled"):
        return None
    levels = tuple(tuple((r or {}).get("Rule") or ()) for r in rbm.get("MatchingRules") or ())
    levels = levels or DEFAULT_MATCHING_RULES
    # CreateDomain/UpdateDomain refuse levels past the rules they name
    # (rules.validate_rule_based_matching); the bounds here keep a configuration stored before
    # that check, or one with the default rules (checked against the model's 1-15 only), from
    # naming a level that does not exist. "Up to level 10" of 4 levels is all 4: nothing the
    # request said is lowered.
    max_matching = min(rbm.get("MaxAllowedRuleLevelForMatching") or len(levels), len(levels))
    selector = rbm.get("AttributeTypesSelector") or {}
    resolution = rbm.get("ConflictResolution") or {}
    return RuleConfig(
        levels=levels,
        max_matching=max_matching,
        max_merging=min(rbm.get("MaxAllowedRuleLevelForMerging") or 0, max_matching),
        one_to_one=selector.get("AttributeMatchingModel", "ONE_TO_ONE") != "MANY_TO_MANY",
        sub_types={
            name: tuple(selector.get(name) or default)
            for name, default in _DEFAULT_SUB_TYPES.items()
        },
        conflict=resolution.get("ConflictResolvingModel") or "RECENCY",
        source_name=resolution.get("SourceName"),
    )


def domain_rules(tx: Tx, domain_name: str) -> RuleConfig | None:
    record = find_domain(tx, domain_name=domain_name)
    return rule_config(record.config) if record else None


# ---------------------------------------------------------------------------- digests


def profile_digests(
    cipher: DomainCipher, rules: RuleConfig, fields: dict[str, Any], region: str
) -> set[tuple[int, bytes]]:
    """(level, digest) pairs of a profile's fields under the domain's rules."""
    return plan_for(rules).digests(cipher.digest, fields, region)


def match_id(level: int, digest: bytes) -> str:
    return f"{level:02d}{digest.hex()}"


def parse_match_id(value: str) -> tuple[int, bytes]:
    try:
        level, digest = int(value[:2]), bytes.fromhex(value[2:])
    except ValueError:
        level, digest = 0, b""
    if not 1 <= level <= 15 or len(digest) != DIGEST_SIZE:
        raise BadRequest(f"{value} is not a rule-based MatchId.")
    return level, digest


def _live() -> Any:
    """rule_match_digest rows of live profiles (not merged away, not deleted)."""
    return rule_match_digest.join(
        profile,
        and_(
            profile.c.domain_name == rule_match_digest.c.domain_name,
            profile.c.profile_id == rule_match_digest.c.profile_id,
            profile.c.merged_into.is_(None),
        ),
    )


def _group_counts(tx: Tx, domain_name: str, pairs: Iterable[tuple[int, bytes]]) -> dict[bytes, int]:
    """Live profiles per digest of `pairs` ((level, digest)). The levels are in the filter so
    the lookup seeks the primary key (domain, level, digest) instead of scanning every digest
    of the domain, which it did on every write."""
    wanted = set(pairs)
    if not wanted:
        return {}
    c = rule_match_digest.c
    rows = tx.conn.execute(
        select(c.digest, func.count())
        .select_from(_live())
        .where(
            c.domain_name == domain_name,
            c.level.in_(sorted({lv for lv, _ in wanted})),
            c.digest.in_(sorted({d for _, d in wanted})),
        )
        .group_by(c.digest)
    )
    return {bytes(r[0]): int(r[1]) for r in rows}


def _members(tx: Tx, domain_name: str, level: int, digest: bytes) -> tuple[str, ...]:
    c = rule_match_digest.c
    rows = tx.conn.execute(
        select(c.profile_id)
        .select_from(_live())
        .where(c.domain_name == domain_name, c.level == level, c.digest == digest)
        .order_by(c.profile_id)
    )
    return tuple(r.profile_id for r in rows)


def _locked_members(tx: Tx, domain_name: str, level: int, digest: bytes) -> tuple[str, ...]:
    """`_members`, each of them locked (PostgreSQL), as they are once locked: a profile that
    left the group while its lock was awaited is not among them (`resolve_locked`)."""

    def group() -> tuple[tuple[str, ...], set[str]]:
        members = _members(tx, domain_name, level, digest)
        return members, set(members)

    return profiles.resolve_locked(tx, domain_name, group)


def _dead_letter_guard(tx: Tx, domain_name: str, level: int) -> None:
    from openprofiles.dlq.sinks import dead_letter_in

    dead_letter_in(
        tx,
        domain_name=domain_name,
        object_type_name=GUARD_OBJECT_TYPE,
        object_json="{}",
        reason=GUARD_MESSAGE.format(level=level),
        category=GUARD_CATEGORY,
        not_retryable=GUARD_NOT_RETRYABLE,
    )


# ---------------------------------------------------------------------------- incremental


def on_profile_written(tx: Tx, domain_name: str, record: ProfileRecord) -> None:
    """Recompute a written profile's digests and, outside an automatic merge, merge its match
    group when the rules say so. Runs in the write's transaction (profiles.service hook)."""
    rules = domain_rules(tx, domain_name)
    if rules is None:
        return
    cipher = tx.cipher(domain_name)
    pairs = profile_digests(cipher, rules, record.fields, tx.settings.default_phone_region)
    had = set(rule_store.forget(tx, domain_name, [record.profile_id]).get(record.profile_id, ()))
    rule_store.store(tx, domain_name, record.profile_id, pairs)
    merging = bool(rules.max_merging) and not _merging.get()
    if merging and not tx.services.database.is_sqlite:
        adding = [p for p in pairs if p[0] <= rules.max_merging and p not in had]
        counts, groups = _lock_group(tx, domain_name, rules, pairs, adding)
    else:
        # SQLite's one writer: nothing changes between the reads, and there is nothing to lock.
        counts = _group_counts(tx, domain_name, pairs)
        groups = _merging_groups(tx, domain_name, rules, pairs, counts) if merging else ()
    # The guard's message goes out once, when this write takes a group past the limit.
    for level in sorted({lv for lv, d in pairs if counts.get(d, 0) == GUARD_LIMIT + 1}):
        _dead_letter_guard(tx, domain_name, level)
    if groups:
        _merge_until_settled(tx, domain_name, rules, record, groups, pairs)


def _merge_until_settled(
    tx: Tx,
    domain_name: str,
    rules: RuleConfig,
    record: ProfileRecord,
    groups: Sequence[Sequence[str]],
    pairs: Collection[tuple[int, bytes]],
) -> None:
    """Merge into the written profile its lowest match group that takes anyone, then the
    survivor's, and so on until none of its groups at or under the merging level takes anyone
    (at most MAX_SETTLE_ROUNDS).

    A group takes no one when an undo separated all its other members from the profile
    (`_joinable`), or they were merged or deleted meanwhile: its next group is tried then, as
    a full pass would merge that group for the profiles that have it as their own (P kept apart
    from Q, who shares its email, is still merged with R, who shares only its phone). The
    survivor has the merged profiles' values as well as its own (and their digests: the merge's
    save digested it again), so it may now match profiles at another level that none of them
    matched alone (P3 joining P1 by email now shares P2's phone): a full pass
    (`_merge_chosen_groups`) merges those groups too, and so must the write. On PostgreSQL each
    round decides its groups as the first did (`_lock_group`), locking the merging digests the
    survivor gained from the merge, which nothing locked before."""
    profile_id = record.profile_id
    locked = set(pairs)
    for _ in range(MAX_SETTLE_ROUNDS):
        # The first group that takes anyone; the survivor's groups are read again after it.
        if not any(
            merge_group(tx, domain_name, rules, profile_id, members, caller=record)
            for members in groups
        ):
            return
        pairs = rule_store.held(tx, domain_name, [profile_id]).get(profile_id, [])
        if tx.services.database.is_sqlite:
            counts = _group_counts(tx, domain_name, pairs)
            groups = _merging_groups(tx, domain_name, rules, pairs, counts)
        else:
            adding = [p for p in pairs if p[0] <= rules.max_merging and p not in locked]
            _, groups = _lock_group(tx, domain_name, rules, pairs, adding)
            locked.update(adding)
        if not groups:
            return


def _lock_group(
    tx: Tx,
    domain_name: str,
    rules: RuleConfig,
    pairs: Collection[tuple[int, bytes]],
    adding: Collection[tuple[int, bytes]],
) -> tuple[dict[bytes, int], tuple[tuple[str, ...], ...]]:
    """PostgreSQL: the groups a write of a profile with `pairs` may merge
    (`_merging_groups`), decided once their members' rows and the merging digests the write
    adds (`adding`: `_lock_digests`) are locked, with the group counts they were decided on.
    A member that left a group, was merged away or was deleted while its lock was awaited is
    not in it; a profile that joined it meanwhile is. Every group's rows are locked, not only
    the first's: a later group is merged when an undo kept the first's members apart, and
    locking its rows then, holding the digests, could deadlock. The first group's rows are
    locked first (the group a write merges in all but that case), then the others'.

    The rows come before the digests (the order store.advisory sets): the group as committed is
    locked first, so that the write, holding a digest another writer waits for, never waits for
    a row that writer holds. A profile that joined the group while the write waited for a digest
    (its writer held it) is locked without waiting; if another writer holds it, the write steps
    back (a savepoint: the digest locks go with it), waits for the row holding rows only, and
    takes the digests again. A write that adds no merging digest takes none, and waits for
    the rows of its group as any look-up does."""
    # The counts the group was last decided on.
    counts: dict[bytes, int] = {}

    def current_group() -> tuple[tuple[tuple[str, ...], ...], set[str]]:
        counts.clear()
        counts.update(_group_counts(tx, domain_name, pairs))
        groups = _merging_groups(tx, domain_name, rules, pairs, counts)
        return groups, {pid for members in groups for pid in members}

    if not adding:
        # No digest to take: the groups' rows are waited for as in any look-up.
        groups = profiles.resolve_locked(tx, domain_name, current_group)
        return counts, groups
    locked: set[str] = set()
    for _ in range(profiles.LOCK_ROUNDS):
        committed, _ = current_group()
        # The lowest group's rows first, as a write that merges only it waits for them; then
        # those of the groups tried after it.
        for rows in (committed[:1], committed[1:]):
            wanted = {pid for members in rows for pid in members} - locked
            profiles.lock_profiles(tx, domain_name=domain_name, profile_ids=wanted)
            locked.update(wanted)
        try:
            with tx.conn.begin_nested():
                _lock_digests(tx, domain_name, adding)
                groups = profiles.resolve_locked(
                    tx, domain_name, current_group, locked=locked, wait=False
                )
        except DBAPIError as exc:
            if not is_lock_unavailable(exc):
                raise
            continue
        return counts, groups
    raise ConcurrentChange("the match group kept changing while its profiles were locked")


def _merging_groups(
    tx: Tx,
    domain_name: str,
    rules: RuleConfig,
    pairs: Iterable[tuple[int, bytes]],
    counts: dict[bytes, int],
) -> tuple[tuple[str, ...], ...]:
    """The live members of each usable group (given the groups' `counts`) a profile with
    `pairs` has at or under the merging level, its own group (the lowest) first, then in
    (level, digest) order: the groups an automatic merge on write tries, one after the other
    (`_merge_until_settled`); () when there is none."""
    usable = sorted(p for p in _usable(pairs, counts) if p[0] <= rules.max_merging)
    return tuple(_members(tx, domain_name, *found) for found in usable)


def _lock_digests(tx: Tx, domain_name: str, pairs: Iterable[tuple[int, bytes]]) -> None:
    """Serialise the writes that give profiles a merging digest they did not have, until they
    commit (PostgreSQL; SQLite has a single writer): the second counts the group once the first
    committed, so it sees the first profile and merges. A write that keeps a digest the profile
    had committed takes no lock: any writer adding it sees that profile. (Locking those too
    would make such a write deadlock with an auto-merge that waits for its profile.) Taken after
    the rows of the profile and of its group as committed before (store.advisory's order), in
    one global order (sorted ids); released at commit."""
    take_locks(tx, (("match", domain_name, str(level), digest) for level, digest in pairs))


def _usable(
    pairs: Iterable[tuple[int, bytes]], counts: dict[bytes, int]
) -> list[tuple[int, bytes]]:
    """The pairs whose group has another live profile and is not stopped by the guard."""
    return [(lv, d) for lv, d in pairs if 2 <= counts.get(d, 0) <= GUARD_LIMIT]


def _choose(
    pairs: Iterable[tuple[int, bytes]], counts: dict[bytes, int]
) -> tuple[int, bytes] | None:
    usable = _usable(pairs, counts)
    return min(usable) if usable else None


# Registered when identity resolution is imported (as register_domain_table is): idempotent.
if on_profile_written not in profiles.on_profile_written:
    profiles.on_profile_written.append(on_profile_written)


# ---------------------------------------------------------------------------- full pass


def rebuild(tx: Tx, *, domain_name: str) -> RebuildResult:
    """Recompute every digest of the domain under its current rules, dead-letter the guard's
    message once per level it stops, auto-merge what the rules say, and mark the rules ACTIVE:
    in one transaction (a small domain's pass, within the request)."""
    started = time.perf_counter()
    record = get_domain(tx, domain_name=domain_name)
    rule_store.clear(tx, domain_name)
    rules = rule_config(record.config)
    if rules is None:
        return RebuildResult(0, 0, 0, ())
    load = rule_store.BulkLoad(tx, domain_name)
    count, processes = _digest(tx, domain_name, rules, load)
    return _complete(tx, record, rules, load, count, processes, started, time.perf_counter())


@dataclass
class StagedPass:
    """The first step of `rebuild_staged`: a snapshot's digests, waiting on the connection."""

    domain_name: str
    rules: RuleConfig
    load: rule_store.BulkLoad
    profiles: int
    processes: int
    started: float
    staged: float


def rebuild_staged(
    pinned: PinnedServices, *, domain_name: str, due: Callable[[Tx], bool]
) -> RebuildResult | None:
    """`rebuild` in two transactions on one connection, so that other writes wait for the
    writing only (on SQLite, one writer for all domains): the profiles are opened and digested
    in a read transaction (`stage_pass`), then a write transaction digests again those written
    meanwhile and writes (`finish_pass`). None, and nothing written, when `due` (checked in the
    write transaction) says the pass is no longer wanted or the rules changed since it began."""
    staged = stage_pass(pinned, domain_name=domain_name)
    if staged is None:
        return None
    try:
        return finish_pass(pinned, staged, due=due)
    except Exception:
        # The staged rows would otherwise stay on the pooled connection until its next pass.
        with contextlib.suppress(Exception), pinned.read() as tx:
            staged.load.discard(tx)
        raise


def stage_pass(pinned: PinnedServices, *, domain_name: str) -> StagedPass | None:
    """Digest the domain's live profiles as a read transaction sees them (None: no rules)."""
    started = time.perf_counter()
    with pinned.read() as tx:
        rules = rule_config(get_domain(tx, domain_name=domain_name).config)
        if rules is None:
            return None
        load = rule_store.BulkLoad(tx, domain_name)
        count, processes = _digest(tx, domain_name, rules, load, versions=True)
    return StagedPass(domain_name, rules, load, count, processes, started, time.perf_counter())


def finish_pass(
    pinned: PinnedServices, staged: StagedPass, *, due: Callable[[Tx], bool]
) -> RebuildResult | None:
    """Catch up with the profiles written since `stage_pass` and write, in one transaction."""
    domain_name = staged.domain_name
    writing = time.perf_counter()
    with pinned.write() as tx:
        current = get_domain(tx, domain_name=domain_name) if due(tx) else None
        if current is None or rule_config(current.config) != staged.rules:
            staged.load.discard(tx)
            return None
        changed = staged.load.catch_up(tx)
        _digest(tx, domain_name, staged.rules, staged.load, only=changed)
        rule_store.clear(tx, domain_name)
        result = _complete(
            tx,
            current,
            staged.rules,
            staged.load,
            live_count(tx, domain_name),
            staged.processes,
            staged.started,
            staged.staged,
        )
    logger.info(
        "rule pass of domain %s: %d profiles digested while reading in %.1f s, %d written "
        "meanwhile digested again; the writer held %.1f s",
        domain_name,
        staged.profiles,
        staged.staged - staged.started,
        len(changed),
        time.perf_counter() - writing,
    )
    return result


def _digest(
    tx: Tx,
    domain_name: str,
    rules: RuleConfig,
    load: rule_store.BulkLoad,
    *,
    versions: bool = False,
    only: Sequence[str] | None = None,
) -> tuple[int, int]:
    """Open and digest the domain's live profiles (or `only` these) into `load`, recording
    their versions when asked; returns how many and the worker processes used."""
    query = select(profile.c.profile_id, profile.c.version, profile.c.sealed).where(
        profile.c.domain_name == domain_name, profile.c.merged_into.is_(None)
    )
    if only is not None:
        if not only:
            return 0, 0
        query = query.where(profile.c.profile_id.in_(list(only)))
    count = len(only) if only is not None else live_count(tx, domain_name)
    seen: list[tuple[str, int]] = []

    def sealed() -> Iterator[tuple[str, bytes]]:
        # Streamed (PostgreSQL would otherwise fetch every sealed profile first).
        for row in tx.conn.execute(query.execution_options(yield_per=2000)):
            if versions:
                seen.append((row.profile_id, row.version))
                if len(seen) >= 2000:
                    load.add_versions(tx, seen)
                    seen.clear()
            yield row.profile_id, bytes(row.sealed)

    processes = rule_pass.processes_for(tx.settings.rule_pass_processes, count)
    region = tx.settings.default_phone_region
    for chunk in rule_pass.digest_profiles(
        tx.cipher(domain_name), plan_for(rules), region, sealed(), processes
    ):
        load.add(tx, chunk.packed)
    if seen:
        load.add_versions(tx, seen)
    return count, processes


def _complete(
    tx: Tx,
    record: DomainRecord,
    rules: RuleConfig,
    load: rule_store.BulkLoad,
    count: int,
    processes: int,
    started: float,
    digested: float,
) -> RebuildResult:
    """Write the loaded digests (the domain's were cleared), check the low-cardinality guard,
    auto-merge, and mark the rules ACTIVE."""
    domain_name = record.name
    stored = load.finish(tx)
    written = time.perf_counter()
    guarded = _guarded_levels(tx, domain_name)
    for level in guarded:
        _dead_letter_guard(tx, domain_name, level)
    # Where a pass's time went, for whoever runs a large domain (no personal data).
    logger.info(
        "rule pass of domain %s: %d profiles, %d digests, %d worker processes; digested in "
        "%.1f s, written in %.1f s, guard checked in %.1f s",
        domain_name,
        count,
        stored,
        processes,
        digested - started,
        written - digested,
        time.perf_counter() - written,
    )
    merges = 0
    if rules.max_merging:
        with no_auto_merge():
            merges = _merge_chosen_groups(tx, domain_name, rules)
    rbm = dict(record.config["RuleBasedMatching"])
    rbm["Status"] = "ACTIVE"
    # Not an API member (responses carry only the model's): what the digests were made from.
    rbm["DigestFormat"] = DIGEST_FORMAT
    update_domain(tx, domain_name=domain_name, changes={"RuleBasedMatching": rbm})
    return RebuildResult(count, stored, merges, tuple(guarded))


def _merge_chosen_groups(tx: Tx, domain_name: str, rules: RuleConfig) -> int:
    """A full pass's automatic merges: every match group some profile has as its own, at or
    under the merging level, merged into its most recently updated member; then again the
    groups chosen anew, round after round until a round merges nothing (at most
    MAX_SETTLE_ROUNDS). Returns how many merges were made.

    One round is not enough: a survivor holds the merged profiles' values and digests as well
    as its own, so it may form a group that none of them formed alone (A{John, jd@} and
    B{Doe, jd@} merged by email make a John Doe, who now shares D{John Doe}'s full name); and a
    profile whose own group lost its other members to a merge has another group now. A write
    of the same profiles merges those (`_merge_until_settled`): so must the pass, or its result
    would depend on how many passes ran. A group tried before with its members unchanged (the
    same profiles, at the same versions) is not tried again: an undo kept them apart, and
    would again."""
    merges = 0
    tried: set[tuple[str, tuple[tuple[str, int], ...]]] = set()
    for _ in range(MAX_SETTLE_ROUNDS):
        merged = 0
        for group in _chosen_groups(tx, domain_name, rules):
            level, digest = parse_match_id(group)
            if level > rules.max_merging:
                continue
            members = _locked_members(tx, domain_name, level, digest)
            if len(members) < 2:
                continue
            current = profiles.get_profiles(tx, domain_name=domain_name, profile_ids=members)
            seen = (group, tuple(sorted((pid, r.version) for pid, r in current.items())))
            if seen in tried:
                continue
            tried.add(seen)
            main = max(current.values(), key=lambda r: (r.updated_at, r.profile_id))
            merged += merge_group(tx, domain_name, rules, main.profile_id, members)
        merges += merged
        if not merged:
            break
    return merges


def live_count(tx: Tx, domain_name: str) -> int:
    """Profiles of the domain not merged away."""
    return int(
        tx.conn.execute(
            select(func.count()).where(
                profile.c.domain_name == domain_name, profile.c.merged_into.is_(None)
            )
        ).scalar_one()
    )


def _guarded_levels(tx: Tx, domain_name: str) -> list[int]:
    """Levels with a digest more than GUARD_LIMIT profiles share. Right after a full pass every
    stored digest is a live profile's, so the digests are counted without looking each
    profile up."""
    c = rule_match_digest.c
    rows = tx.conn.execute(
        select(c.level)
        .where(c.domain_name == domain_name)
        .group_by(c.level, c.digest)
        .having(func.count() > GUARD_LIMIT)
    )
    return sorted({r.level for r in rows})


# ---------------------------------------------------------------------------- match groups


def _chosen_groups(tx: Tx, domain_name: str, rules: RuleConfig) -> list[str]:
    """MatchIds of the groups some profile belongs to (its lowest usable level), in id order."""
    c = rule_match_digest.c
    rows = list(
        tx.conn.execute(
            select(c.level, c.digest, c.profile_id)
            .select_from(_live())
            .where(c.domain_name == domain_name, c.level <= rules.max_matching)
        )
    )
    counts: dict[bytes, int] = defaultdict(int)
    for r in rows:
        counts[bytes(r.digest)] += 1
    best: dict[str, tuple[int, bytes]] = {}
    for r in rows:
        digest = bytes(r.digest)
        if not 2 <= counts[digest] <= GUARD_LIMIT:
            continue
        pair = (int(r.level), digest)
        if r.profile_id not in best or pair < best[r.profile_id]:
            best[r.profile_id] = pair
    return sorted({match_id(lv, d) for lv, d in best.values()})


def _enabled(tx: Tx, domain_name: str) -> RuleConfig:
    tx.cipher(domain_name)  # NotFound for an unknown domain
    rules = domain_rules(tx, domain_name)
    if rules is None:
        raise BadRequest(f"Rule-based matching is not enabled for domain {domain_name}.")
    return rules


# Usable groups list_matches examines per query while it fills a page.
_SCAN_GROUPS = 1000


def list_matches(
    tx: Tx, *, domain_name: str, limit: int = 100, after: str | None = None
) -> tuple[list[str], bool]:
    """The domain's rule-based MatchIds in order after `after`; the flag says more follow.

    MatchIds sort as the digest index does (level, then digest), so a page walks the usable
    groups from `after` in index order and keeps those some member has as its own group (the
    lowest usable one, as `_chosen_groups` decides for the whole domain): a page costs the
    groups it passes, not every digest of the domain."""
    rules = _enabled(tx, domain_name)
    bound = parse_match_id(after) if after else (0, b"")
    c = rule_match_digest.c
    found: list[str] = []
    while len(found) <= limit:
        scan = min(limit + 1, _SCAN_GROUPS)
        usable = [
            (int(r.level), bytes(r.digest))
            for r in tx.conn.execute(
                select(c.level, c.digest)
                .select_from(_live())
                .where(
                    c.domain_name == domain_name,
                    c.level <= rules.max_matching,
                    tuple_(c.level, c.digest) > tuple_(*bound),
                )
                .group_by(c.level, c.digest)
                .having(func.count().between(2, GUARD_LIMIT))
                .order_by(c.level, c.digest)
                .limit(scan)
            )
        ]
        if not usable:
            break
        members = _members_between(tx, domain_name, bound, usable)
        chosen = set(_best_groups(tx, domain_name, rules, sorted(members)).values())
        found.extend(match_id(*g) for g in usable if g in chosen)
        if len(usable) < scan:
            break
        bound = usable[-1]
    return found[:limit], len(found) > limit


def _members_between(
    tx: Tx, domain_name: str, bound: tuple[int, bytes], groups: Sequence[tuple[int, bytes]]
) -> set[str]:
    """Live members of `groups`, which lie in index order after `bound`: one range read of
    the index (the range the groups were found in), not a lookup per group."""
    c = rule_match_digest.c
    wanted = set(groups)
    rows = tx.conn.execute(
        select(c.level, c.digest, c.profile_id)
        .select_from(_live())
        .where(
            c.domain_name == domain_name,
            tuple_(c.level, c.digest) > tuple_(*bound),
            tuple_(c.level, c.digest) <= tuple_(*groups[-1]),
        )
    )
    return {r.profile_id for r in rows if (int(r.level), bytes(r.digest)) in wanted}


def _best_groups(
    tx: Tx, domain_name: str, rules: RuleConfig, profile_ids: Sequence[str]
) -> dict[str, tuple[int, bytes]]:
    """Per profile that has one, its own group: the lowest usable (level, digest) it holds."""
    held = {
        pid: [p for p in pairs if p[0] <= rules.max_matching]
        for pid, pairs in rule_store.held(tx, domain_name, profile_ids).items()
    }
    pairs = sorted({p for ps in held.values() for p in ps})
    counts: dict[bytes, int] = {}
    for start in range(0, len(pairs), 500):
        counts.update(_group_counts(tx, domain_name, pairs[start : start + 500]))
    return {pid: best for pid, ps in held.items() if (best := _choose(ps, counts)) is not None}


def get_match(tx: Tx, *, domain_name: str, match_id: str) -> RuleMatch:
    rules = _enabled(tx, domain_name)
    level, digest = parse_match_id(match_id)
    members = _members(tx, domain_name, level, digest) if level <= rules.max_matching else ()
    if len(members) < 2:
        raise NotFound(f"The match {match_id} does not exist in domain {domain_name}.")
    return RuleMatch(match_id, level, rules.levels[level - 1], members)


def profile_match(tx: Tx, *, domain_name: str, profile_id: str) -> RuleMatch | None:
    """The match group of a live profile: the lowest usable level it shares a digest at."""
    rules = _enabled(tx, domain_name)
    found = _best_groups(tx, domain_name, rules, [profile_id]).get(profile_id)
    if found is None:
        return None
    level, digest = found
    return RuleMatch(
        match_id(level, digest),
        level,
        rules.levels[level - 1],
        _members(tx, domain_name, level, digest),
    )


# Profiles GetSimilarProfiles reads a time, of those its key finds, and at most in all: a key
# shared by very many profiles (a placeholder phone number) would otherwise cost a query for
# each, in one read transaction.
SIMILAR_PAGE = 100
SIMILAR_SCAN_LIMIT = 1000


def similar_profiles(
    tx: Tx, *, domain_name: str, search_key: str, search_value: str
) -> RuleMatch | None:
    """GetSimilarProfiles for RULE_BASED_MATCHING: the match group of the profile the key finds
    (the lowest-level one when it finds several); NotFound when the key finds no profile.
    Every profile the key finds is looked at, a page at a time (only the first 100 were), until
    a group of level 1 is found (none can be lower) or SIMILAR_SCAN_LIMIT profiles were looked
    at (of several level-1 groups, the first met in profile-id order is answered; below that
    level, the lowest group id)."""
    _enabled(tx, domain_name)
    best: RuleMatch | None = None
    after: str | None = None
    any_found = False
    scanned = 0
    while True:
        page, after = profiles.search_profiles(
            tx,
            domain_name=domain_name,
            criteria=[profiles.SearchCriterion(search_key, (search_value,))],
            limit=SIMILAR_PAGE,
            after=after,
        )
        any_found = any_found or bool(page)
        scanned += len(page)
        for record, _ in page:
            match = profile_match(tx, domain_name=domain_name, profile_id=record.profile_id)
            if match is not None and (
                best is None or (match.level, match.match_id) < (best.level, best.match_id)
            ):
                best = match
        if after is None or scanned >= SIMILAR_SCAN_LIMIT or (best is not None and best.level == 1):
            break
    if not any_found:
        raise NotFound(f"No profile has the value given for key {search_key}.")
    return best


# ---------------------------------------------------------------------------- auto-merge


@contextmanager
def no_auto_merge() -> Iterator[None]:
    """Writes inside this block recompute digests but start no automatic merge (an automatic
    merge's own writes; an undo, which would otherwise merge the profiles straight back)."""
    token = _merging.set(True)
    try:
        yield
    finally:
        _merging.reset(token)


def _separated(tx: Tx, domain_name: str, profile_ids: Collection[str]) -> dict[str, set[str]]:
    """Per profile of `profile_ids`, the profiles an undone merge that involved it separated it
    from (every profile of that merge, its main and those it merged, is kept apart from every
    other). Every undone merge of the domain is read (few merges are undone; ix_merge_log_undone
    finds them), so one is seen whichever of its profiles is among `profile_ids`, not only its
    main profile. An undone merge whose log DeleteProfile erased keeps its other profiles apart
    through `kept_apart` (identity.service.forget_deleted_profiles)."""
    wanted = set(profile_ids)
    apart: dict[str, set[str]] = defaultdict(set)
    groups = [
        {row.main_profile_id, *row.merged_profile_ids}
        for row in tx.conn.execute(
            select(merge_log.c.main_profile_id, merge_log.c.merged_profile_ids).where(
                merge_log.c.domain_name == domain_name, merge_log.c.undone_at.is_not(None)
            )
        )
    ]
    groups += [
        set(ids)
        for ids in tx.conn.execute(
            select(kept_apart.c.profile_ids).where(kept_apart.c.domain_name == domain_name)
        ).scalars()
    ]
    for involved in groups:
        for pid in involved & wanted:
            apart[pid] |= involved - {pid}
    return apart


def _joinable(tx: Tx, domain_name: str, main_id: str, candidates: Sequence[str]) -> list[str]:
    """The candidates an automatic merge into `main_id` may take, in their order: one is left
    out when it, or a profile merged into it, was separated by an undone merge from the main
    profile, from a profile merged into the main profile, or from a candidate taken before it
    (or a profile merged into that one). So no automatic merge, into whichever profile, puts
    together again customers an undo told apart; an operator's MergeProfiles still may."""
    if not candidates:
        return []
    live: set[str] = set()
    for chunk in in_chunks(candidates):
        live.update(
            tx.conn.execute(
                select(profile.c.profile_id).where(
                    profile.c.domain_name == domain_name,
                    profile.c.profile_id.in_(chunk),
                    profile.c.merged_into.is_(None),
                )
            ).scalars()
        )
    # A candidate merged or deleted by another writer is left out later (merge_group): it must
    # not keep another one out meanwhile.
    candidates = [pid for pid in candidates if pid in live]
    held = profiles.absorbed_profiles(
        tx, domain_name=domain_name, profile_ids=[main_id, *candidates]
    )
    apart = _separated(tx, domain_name, set().union(*held.values()))
    if not apart:
        return candidates

    def separated_from(members: set[str]) -> set[str]:
        return set().union(*(apart.get(pid, set()) for pid in members))

    barred = separated_from(held[main_id])
    taken: list[str] = []
    for pid in candidates:
        if held[pid] & barred:
            continue
        taken.append(pid)
        barred |= separated_from(held[pid])
    return taken


def merge_group(
    tx: Tx,
    domain_name: str,
    rules: RuleConfig,
    main_id: str,
    members: Sequence[str],
    caller: ProfileRecord | None = None,
) -> int:
    """Merge the group's other live members into `main_id` (chunks of 20, the API's limit),
    but none that an undone merge separated from the main profile or from another member taken
    (`_joinable`); returns how many merges were made. The caller's record is refreshed in place,
    so code that still holds it (ingestion) writes on top of the merged fields."""
    from openprofiles.identity.service import merge_profiles

    candidates = [m for m in dict.fromkeys(members) if m != main_id]
    # Every row locked before anything is read, in one statement (PostgreSQL; the order
    # store.advisory sets): a member merged or deleted by another writer since the group was
    # read is left out below instead of refused by the merge, and an undo that separated two of
    # them meanwhile is seen.
    profiles.lock_profiles(tx, domain_name=domain_name, profile_ids=[main_id, *candidates])
    others = _joinable(tx, domain_name, main_id, candidates)
    merges = 0
    with no_auto_merge():
        for start in range(0, len(others), MAX_MERGE_CHUNK - 1):
            chunk = others[start : start + MAX_MERGE_CHUNK - 1]
            records = profiles.get_profiles(
                tx, domain_name=domain_name, profile_ids=[main_id, *chunk]
            )
            if main_id not in records or records[main_id].profile_id != main_id:
                # A pass's chosen main profile, merged or deleted by another writer meanwhile:
                # the rest of the group waits for its next write or the next pass.
                break
            chunk = [pid for pid in chunk if pid in records and records[pid].profile_id == pid]
            if not chunk:
                continue
            try:
                merge_profiles(
                    tx,
                    domain_name=domain_name,
                    main_profile_id=main_id,
                    profile_ids=chunk,
                    field_sources=resolve_conflicts(
                        [records[main_id], *(records[p] for p in chunk)], main_id, rules
                    ),
                )
            except ProfileTooLarge:
                # The merged profile would pass the size limit (profiles.size). Raised by the
                # merge's first write, the main profile's, so nothing of it is written: the
                # profiles stay apart (a person can merge them after trimming one), and the
                # write that found the match applies, where the error refused it (an update, a
                # batch's record dead-lettered). No value in the line: it is only the domain's.
                logger.warning(
                    "identity: an automatic merge in domain %s was left out: the merged "
                    "profile would pass the profile size limit",
                    domain_name,
                )
                break
            rule_store.forget(tx, domain_name, chunk)
            merges += 1
    if merges and caller is not None:
        fresh = profiles.get_profile(tx, domain_name=domain_name, profile_id=main_id)
        caller.fields = fresh.fields
        caller.manual_fields = fresh.manual_fields
        caller.field_sources = fresh.field_sources
        caller.version = fresh.version
        caller.updated_at = fresh.updated_at
    return merges


def resolve_conflicts(
    records: Sequence[ProfileRecord], main_id: str, rules: RuleConfig
) -> dict[str, Any]:
    """FieldSourceProfileIds for an automatic merge (spec §5.1 ConflictResolution): per field
    (Attributes per key) the profile whose value wins. A value a person set wins over ingested
    ones; then SOURCE prefers values written by the object type SourceName; then the most
    recently updated profile wins (RECENCY; the profile's update time stands for the value's).

    A gender or party type is one value held in either of two fields, the enum or its
    free-text twin (profiles.models.unit_members): the pair is decided as one field, named by
    its enum field as FieldSourceProfileIds names it, and the merge takes both of the winner's.
    Decided apart, the twin's winner (an older profile holding only GenderString) would name a
    source for the pair and override the winner's own enum value."""

    def winner(*paths: str) -> str | None:
        def covers(p: str) -> bool:
            return any(p == path or p.startswith(path + ".") for path in paths)

        holders = [
            r for r in records if any(_value(r, path) not in (None, "", {}) for path in paths)
        ]
        if not holders:
            return None
        pool = [r for r in holders if any(covers(p) for p in r.manual_fields)] or holders
        if rules.conflict == "SOURCE" and rules.source_name and len(pool) > 1:
            pool = [
                r
                for r in pool
                if any(
                    covers(p) and (s or {}).get("type") == rules.source_name
                    for p, s in r.field_sources.items()
                )
            ] or pool
        best = max(pool, key=lambda r: (r.updated_at, r.profile_id == main_id))
        return best.profile_id

    out: dict[str, Any] = {}
    for name in PROFILE_FIELDS:
        members = unit_members(name)
        if name == "Attributes" or name != members[0]:
            continue  # Attributes key by key, below; a twin with its unit
        chosen = winner(*members)
        if chosen is not None and chosen != main_id:
            out[name] = chosen
    keys = dict.fromkeys(k for r in records for k in (r.fields.get("Attributes") or {}))
    attributes = {}
    for key in keys:
        chosen = winner(f"Attributes.{key}")
        if chosen is not None and chosen != main_id:
            attributes[key] = chosen
    if attributes:
        out["Attributes"] = attributes
    return out


def _value(record: ProfileRecord, path: str) -> Any:
    if path.startswith("Attributes."):
        return (record.fields.get("Attributes") or {}).get(path[len("Attributes.") :])
    return record.fields.get(path)


def matched_values(tx: Tx, *, domain_name: str, match: RuleMatch) -> dict[str, dict[str, str]]:
    """Per profile of a match, the values of the level's attributes (opened from the profiles;
    for an explanation shown to an administrator who asked for values)."""
    rules = _enabled(tx, domain_name)
    records = profiles.get_profiles(tx, domain_name=domain_name, profile_ids=match.profile_ids)
    out: dict[str, dict[str, str]] = {}
    for pid in match.profile_ids:
        fields = records[pid].fields if pid in records else {}
        shown: dict[str, str] = {}
        for attribute in match.attributes:
            if attribute in ("EmailAddress", "PhoneNumber"):
                for sub_type in rules.sub_types[attribute]:
                    if value := fields.get(SUB_TYPE_FIELDS.get(sub_type, "")):
                        shown[sub_type] = str(value)
            elif attribute.startswith("Address."):
                part = attribute.split(".", 1)[1]
                for sub_type in rules.sub_types["Address"]:
                    address = fields.get(SUB_TYPE_FIELDS.get(sub_type, ""))
                    if isinstance(address, dict) and (value := address_part(address, part)):
                        shown[f"{SUB_TYPE_FIELDS[sub_type]}.{part}"] = value
            elif attribute.startswith("Attributes."):
                value = (fields.get("Attributes") or {}).get(attribute[len("Attributes.") :])
                if value:
                    shown[attribute] = str(value)
            elif value := fields.get(attribute):
                shown[attribute] = str(value)
        out[pid] = shown
    return out
