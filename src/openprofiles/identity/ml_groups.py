"""How a probabilistic matching job's match groups are stored and read (spec §5.2): in pages.

A job replaces all of a domain's groups at once, and they are read a page or a group at a time
(GetMatches in MatchId order, a group by MatchId, GetSimilarProfiles by profile id); no group
changes between jobs. So they are stored as pages of consecutive groups rather than a row per
group and a row per member: `ml_match_page` holds up to `GROUPS_PER_PAGE` groups in MatchId
order ([MatchId, confidence, profile ids, linking pairs] each), keyed by its first MatchId;
`ml_match_member_page` holds up to `MEMBERS_PER_PAGE` (profile id, MatchId) pairs in profile id
order, keyed by its first profile id. A group or a profile is found in the last page whose key
is not greater than its id. At 100,000 profiles a job stored 24,090 group rows and 61,113 member
rows, and deleted as many of the previous job's: about a second on SQLite; pages make that a
few hundred rows.

The pairs are stored compactly: (position of each profile in the group, match probability, match
weight, position of the pair's attribute list in the job's `explanation_levels`), expanded by
`explanation`. Groups stored before that form (a list of explanation dicts) are read as they are.
Profile ids and MatchIds are random; the pages hold no personal value.

A job saves only profiles that still exist (`without_profiles`), and DeleteProfile takes the
profiles it erases out (`forget_profiles`). The two take the domain's groups lock (`lock_groups`):
the save exclusively, deletions shared with each other. So on PostgreSQL, where a deletion
committing between the save's look at the profiles and its commit would otherwise find the
previous job's groups and leave the erased id in the new ones, one waits for the other and
then sees its outcome. The lock is the last a transaction takes (store.advisory's order, like
the match digests there): a job's save takes it after its auto-merge has locked what it
merges, and holding it waits for no row, so a deletion holding its profiles' rows while it
waits for the lock closes no cycle.

Two deletions hold the shared lock together, and each rewrites whole pages from what it read:
so each locks the pages it rewrites (FOR UPDATE) before it reads them, and one rewriting a page
the other rewrites too waits for the other's commit and then reads its outcome (PostgreSQL's
READ COMMITTED returns the row as committed), instead of writing back the removals the other
made undone. Deletions stay concurrent when their profiles are on different pages. Each locks
its match pages in key order, in one statement, then its member pages likewise: two deletions
meet in the same order, and nothing else locks these rows (a job's save replaces them holding
the lock exclusively, so never while a deletion holds one). A page the other deletion removed
(left empty) is no longer found, and is skipped.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select

from openprofiles.context import Tx
from openprofiles.domains.service import register_domain_table
from openprofiles.errors import NotFound
from openprofiles.gc_pause import paused_gc
from openprofiles.store.advisory import take_locks
from openprofiles.store.in_lists import in_chunks
from openprofiles.store.schema import identity_job, ml_match_member_page, ml_match_page

GROUPS_PER_PAGE = 256
MEMBERS_PER_PAGE = 1024

for _table in (ml_match_page, ml_match_member_page):
    register_domain_table(_table)

Pair = tuple[int, int, float, float, int]


@dataclass(frozen=True)
class MatchGroup:
    match_id: str
    profile_ids: tuple[str, ...]
    confidence: float
    # Per linking pair: {"ProfileIds", "MatchProbability", "MatchWeight", "Attributes": [...]}
    # (filled by get_group, from `pairs` and the job's levels).
    explanation: list[dict[str, Any]] = field(default_factory=list)
    # The linking pairs as a job stores them: (position of each profile in `profile_ids`,
    # match probability, match weight, position of the pair's attribute list in the job's
    # levels).
    pairs: tuple[Pair, ...] = ()


@dataclass(frozen=True)
class MatchPage:
    generated_at: datetime | None
    total: int
    groups: list[MatchGroup]
    more: bool


def explanation(
    pairs: Sequence[Sequence[Any]], profile_ids: Sequence[str], levels: Sequence[Any]
) -> list[dict[str, Any]]:
    """A group's explanation from its stored pairs (`MatchGroup.pairs`) and its job's levels."""
    return [
        {
            "ProfileIds": [profile_ids[a], profile_ids[b]],
            "MatchProbability": probability,
            "MatchWeight": weight,
            "Attributes": [dict(attribute) for attribute in levels[position]],
        }
        for a, b, probability, weight, position in pairs
    ]


# ---------------------------------------------------------------------------- writing


def lock_groups(tx: Tx, domain_name: str, *, shared: bool = False) -> None:
    """Hold the domain's groups lock until the transaction ends: exclusively for a job's save,
    `shared` for a deletion's `forget_profiles` (see the module's docstring)."""
    take_locks(tx, [("ml_groups", domain_name)], shared=shared)


def _pages(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@paused_gc()  # an entry per group and per member, all kept until written (openprofiles.gc_pause)
def store_groups(tx: Tx, domain_name: str, job_id: str, groups: Iterable[MatchGroup]) -> None:
    """Replace the domain's match groups with these (a job's)."""
    for table in (ml_match_member_page, ml_match_page):
        tx.conn.execute(delete(table).where(table.c.domain_name == domain_name))
    entries = [
        (g.match_id, g.confidence, g.profile_ids, {"pairs": g.pairs})
        for g in sorted(groups, key=lambda g: g.match_id)
    ]
    if entries:
        tx.conn.execute(
            ml_match_page.insert(),
            [
                {
                    "domain_name": domain_name,
                    "first_match_id": page[0][0],
                    "job_id": job_id,
                    "group_count": len(page),
                    "groups": page,
                }
                for page in _pages(entries, GROUPS_PER_PAGE)
            ],
        )
    members = sorted((pid, entry[0]) for entry in entries for pid in entry[2])
    if members:
        tx.conn.execute(
            ml_match_member_page.insert(),
            [
                {"domain_name": domain_name, "first_profile_id": page[0][0], "members": page}
                for page in _pages(members, MEMBERS_PER_PAGE)
            ],
        )


# ---------------------------------------------------------------------------- reading


def _page_holding(tx: Tx, key: Any, domain_name: str, at: str, *columns: Any) -> Any:
    """`columns` of the page whose range holds `at` (the last whose key is not greater), or
    None when `at` comes before every page."""
    return tx.conn.execute(
        select(*columns)
        .where(key.table.c.domain_name == domain_name, key <= at)
        .order_by(key.desc())
        .limit(1)
    ).first()


def list_groups(
    tx: Tx, *, domain_name: str, limit: int, after: str | None, generated_at: datetime | None
) -> MatchPage:
    """The stored groups in MatchId order after `after` (without explanations)."""
    c = ml_match_page.c
    total = tx.conn.execute(
        select(func.coalesce(func.sum(c.group_count), 0)).where(c.domain_name == domain_name)
    ).scalar_one()
    # Pages are read a batch at a time until limit + 1 groups past `after` are found (the first
    # page may hold earlier ones) or none is left. A batch is what full pages would need, but
    # pages hold fewer once DeleteProfile took groups out (`forget_profiles`), so more batches
    # may follow: stopping after the first would end GetMatches early, without a NextToken.
    batch = limit // GROUPS_PER_PAGE + 2
    query = select(c.first_match_id, c.groups).where(c.domain_name == domain_name)
    if after is not None:
        start = _page_holding(tx, c.first_match_id, domain_name, after, c.first_match_id)
        if start is not None:
            query = query.where(c.first_match_id >= start.first_match_id)
    found: list[MatchGroup] = []
    last: str | None = None
    while len(found) <= limit:
        rows = tx.conn.execute(
            (query if last is None else query.where(c.first_match_id > last))
            .order_by(c.first_match_id)
            .limit(batch)
        ).all()
        for first, entries in rows:
            last = first
            found.extend(
                MatchGroup(match_id, tuple(profile_ids), float(confidence))
                for match_id, confidence, profile_ids, _ in entries
                if after is None or match_id > after
            )
            if len(found) > limit:
                break
        if len(rows) < batch:
            break
    return MatchPage(generated_at, int(total), found[:limit], len(found) > limit)


def get_group(tx: Tx, *, domain_name: str, match_id: str) -> MatchGroup:
    """One stored group with its explanation; NotFound when there is none."""
    c = ml_match_page.c
    page = _page_holding(tx, c.first_match_id, domain_name, match_id, c.job_id, c.groups)
    entries: list[Any] = page.groups if page is not None else []
    index = bisect.bisect_left(entries, match_id, key=lambda entry: entry[0])
    if index == len(entries) or entries[index][0] != match_id:
        raise NotFound(f"The match {match_id} does not exist in domain {domain_name}.")
    _, confidence, profile_ids, stored = entries[index]
    if isinstance(stored, dict):
        levels = tx.conn.execute(
            select(identity_job.c.explanation_levels).where(
                identity_job.c.domain_name == domain_name, identity_job.c.job_id == page.job_id
            )
        ).scalar_one()
        stored = explanation(stored["pairs"], profile_ids, levels)
    return MatchGroup(match_id, tuple(profile_ids), float(confidence), list(stored))


def match_ids_of(tx: Tx, *, domain_name: str, profile_ids: Iterable[str]) -> set[str]:
    """The MatchIds of the stored groups holding any of these profiles."""
    c = ml_match_member_page.c
    out: set[str] = set()
    members: list[Any] = []  # the page read last: ids in order are often on the same one
    for profile_id in sorted(set(profile_ids)):
        if not members or not members[0][0] <= profile_id <= members[-1][0]:
            page = _page_holding(tx, c.first_profile_id, domain_name, profile_id, c.members)
            members = page.members if page is not None else []
        index = bisect.bisect_left(members, profile_id, key=lambda member: member[0])
        while index < len(members) and members[index][0] == profile_id:
            out.add(members[index][1])
            index += 1
    return out


# ---------------------------------------------------------------------------- erasing


def forget_profiles(tx: Tx, domain_name: str, profile_ids: Iterable[str]) -> None:
    """Take erased profiles (DeleteProfile: identity.service.forget_deleted_profiles) out of
    the stored groups, so GetMatches, a group and GetSimilarProfiles stop naming them before
    the next job: each leaves its groups, with the linking pairs it is in, and a group left
    with fewer than two profiles goes, its last member's entry too. Only the pages holding
    them are rewritten (a page left empty goes)."""
    gone = set(profile_ids)
    # Before the groups are read: a job saving meanwhile commits first, and its groups are read.
    lock_groups(tx, domain_name, shared=True)
    # Read without a row lock: a concurrent deletion can only take groups out of this set
    # (which is then not found on its page below), never add one.
    match_ids = match_ids_of(tx, domain_name=domain_name, profile_ids=gone)
    if not match_ids:
        return
    c = ml_match_page.c
    # The pages holding them, locked and read after the lock (the module's docstring).
    holding: dict[str, str] = {}  # MatchId -> the first MatchId of its page
    for match_id in match_ids:
        page = _page_holding(tx, c.first_match_id, domain_name, match_id, c.first_match_id)
        if page is not None:
            holding[match_id] = page.first_match_id
    pages = _locked_pages(tx, c.first_match_id, c.groups, domain_name, set(holding.values()))
    unlisted: set[tuple[str, str]] = set()  # (profile id, MatchId) to take off member pages
    changed: set[str] = set()
    for match_id, first in sorted(holding.items()):
        if first not in pages:
            continue
        entries = pages[first]
        index = bisect.bisect_left(entries, match_id, key=lambda entry: entry[0])
        if index == len(entries) or entries[index][0] != match_id:
            continue
        changed.add(first)
        _, confidence, ids, stored = entries[index]
        left = _group_without(ids, stored, gone)
        if left is None:
            del entries[index]
            unlisted.update((pid, match_id) for pid in ids)
            continue
        unlisted.update((pid, match_id) for pid in ids if pid in gone)
        entries[index] = [match_id, confidence, *left]
    for first in sorted(changed):
        entries = pages[first]
        where = (c.domain_name == domain_name, c.first_match_id == first)
        if entries:
            tx.conn.execute(
                ml_match_page.update()
                .where(*where)
                .values(groups=entries, group_count=len(entries))
            )
        else:
            tx.conn.execute(delete(ml_match_page).where(*where))
    _unlist_members(tx, domain_name, unlisted)


def _locked_pages(
    tx: Tx, key: Any, column: Any, domain_name: str, keys: Iterable[str]
) -> dict[str, list[Any]]:
    """The pages keyed by `keys` (their `column`, by key), locked FOR UPDATE in key order in
    one statement (PostgreSQL; SQLite's one writer needs none). A page deleted meanwhile is
    missing from the answer."""
    out: dict[str, list[Any]] = {}
    for chunk in in_chunks(sorted(keys)):
        rows = tx.conn.execute(
            select(key, column)
            .where(key.table.c.domain_name == domain_name, key.in_(chunk))
            .order_by(key)
            .with_for_update()
        )
        out.update((first, list(value)) for first, value in rows)
    return out


def without_profiles(groups: Iterable[MatchGroup], gone: set[str]) -> list[MatchGroup]:
    """A job's groups without the `gone` profiles (erased since the job read them), before
    `store_groups`: each group as `forget_profiles` would leave it had the deletion come just
    after the save, so an erased profile is never stored and the outcome does not depend on
    which came first."""
    out: list[MatchGroup] = []
    for group in groups:
        if gone.isdisjoint(group.profile_ids):
            out.append(group)
            continue
        left = _group_without(group.profile_ids, {"pairs": group.pairs}, gone)
        if left is not None:
            kept, stored = left
            pairs = tuple((a, b, p, w, level) for a, b, p, w, level in stored["pairs"])
            out.append(MatchGroup(group.match_id, tuple(kept), group.confidence, pairs=pairs))
    return out


def _group_without(ids: Sequence[str], stored: Any, gone: set[str]) -> tuple[list[str], Any] | None:
    """A group's profile ids and linking pairs without the `gone` profiles; None when fewer
    than two profiles are left, and the group goes."""
    kept = [pid for pid in ids if pid not in gone]
    if len(kept) < 2:
        return None
    return kept, _stored_without(stored, ids, gone)


def _stored_without(stored: Any, ids: Sequence[str], gone: set[str]) -> Any:
    """A group's linking pairs (`MatchGroup.pairs`, or explanation dicts stored before that
    form) without those naming an erased profile, positions renumbered for the kept ids."""
    if not isinstance(stored, dict):
        return [e for e in stored if not gone.intersection(e.get("ProfileIds") or ())]
    position: dict[int, int] = {}
    for old, pid in enumerate(ids):
        if pid not in gone:
            position[old] = len(position)
    pairs = [
        [position[a], position[b], *rest]
        for a, b, *rest in stored.get("pairs") or ()
        if a in position and b in position
    ]
    return {**stored, "pairs": pairs}


def _unlist_members(tx: Tx, domain_name: str, unlisted: set[tuple[str, str]]) -> None:
    """Take (profile id, MatchId) entries off the member pages holding them."""
    c = ml_match_member_page.c
    keys = {
        page.first_profile_id
        for profile_id in {pid for pid, _ in unlisted}
        if (
            page := _page_holding(
                tx, c.first_profile_id, domain_name, profile_id, c.first_profile_id
            )
        )
        is not None
    }
    # Locked before they are read, after the match pages (the module's docstring).
    pages = _locked_pages(tx, c.first_profile_id, c.members, domain_name, keys)
    for first, members in pages.items():
        left = [m for m in members if (m[0], m[1]) not in unlisted]
        if len(left) == len(members):
            continue
        where = (c.domain_name == domain_name, c.first_profile_id == first)
        if left:
            tx.conn.execute(ml_match_member_page.update().where(*where).values(members=left))
        else:
            tx.conn.execute(delete(ml_match_member_page).where(*where))
