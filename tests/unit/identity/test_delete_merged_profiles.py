"""DeleteProfile erases every profile merged into the deleted one, however deep the merges go
(B into A, A into C, C into D: deleting D takes all four), with their keys, objects, match rows
and the merge logs holding their before-images; another customer's data stays. However many
profiles it takes, no statement names more of them than one may bind. The other profiles of an
undone merge it erases stay apart from each other. Both databases."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event, func, or_, select

from openprofiles.context import Services
from openprofiles.domains.service import update_domain
from openprofiles.errors import NotFound
from openprofiles.identity import matching, service
from openprofiles.profiles import service as profiles
from openprofiles.store import in_lists
from openprofiles.store.schema import kept_apart, merge_log, metadata, profile, profile_object

from .conftest import DOMAIN, ingest


def merge(services: Services, main: str, merged: list[str]) -> str:
    with services.write() as tx:
        return service.merge_profiles(
            tx, domain_name=DOMAIN, main_profile_id=main, profile_ids=merged
        ).merge_id


def rows_naming(services: Services, profile_ids: set[str]) -> dict[str, int]:
    """Per table, the domain's rows that name one of the profiles: every table with a
    `profile_id` column, a profile merged into one of them, and merge logs involving them."""
    ids = sorted(profile_ids)
    counts: dict[str, int] = {}
    with services.read() as tx:
        for table in metadata.sorted_tables:
            if "profile_id" not in table.c:
                continue
            condition = table.c.profile_id.in_(ids)
            if table is profile:
                condition = or_(condition, profile.c.merged_into.in_(ids))
            counts[table.name] = tx.conn.execute(
                select(func.count())
                .select_from(table)
                .where(table.c.domain_name == DOMAIN, condition)
            ).scalar_one()
        counts["merge_log"] = sum(
            1
            for row in tx.conn.execute(
                select(merge_log.c.main_profile_id, merge_log.c.merged_profile_ids).where(
                    merge_log.c.domain_name == DOMAIN
                )
            )
            if profile_ids.intersection([row.main_profile_id, *row.merged_profile_ids])
        )
    return counts


def crm(services: Services, number: int, first: str) -> Any:
    return ingest(
        services, {"id": f"c{number}", "email": f"{first.lower()}@example.com", "first": first}
    )


def test_deleting_a_profile_deletes_every_profile_merged_into_it_however_deep(
    services: Services, domain: str
) -> None:
    with services.write() as tx:
        update_domain(tx, domain_name=DOMAIN, changes={"Matching": {"Enabled": True}})
    b, a, c, d = (crm(services, n, name).profile_id for n, name in enumerate("BACD", 1))
    merge(services, a, [b])
    merge(services, c, [a])
    merge(services, d, [c])
    # Another customer, with a merge of its own: none of it goes.
    u, v = (crm(services, n, name).profile_id for n, name in ((8, "Uma"), (9, "Vic")))
    kept_merge = merge(services, u, [v])
    kept_before = rows_naming(services, {u, v})
    assert kept_before["profile"] == 2 and kept_before["profile_object"] == 2
    assert kept_before["profile_key"] > 0 and kept_before["merge_log"] == 1
    assert rows_naming(services, {a, b})["profile"] == 2  # still there, merged away

    with services.write() as tx:
        profiles.delete_profile(tx, domain_name=DOMAIN, profile_id=d)

    left = rows_naming(services, {a, b, c, d})
    assert left == dict.fromkeys(left, 0)
    for gone in (a, b, c, d):
        with services.read() as tx, pytest.raises(NotFound):
            profiles.get_profile(tx, domain_name=DOMAIN, profile_id=gone)
    assert rows_naming(services, {u, v}) == kept_before
    with services.read() as tx:
        assert profiles.resolve_profile_id(tx, domain_name=DOMAIN, profile_id=v) == u
        assert [m.merge_id for m in service.list_merges(tx, domain_name=DOMAIN)] == [kept_merge]
        objects = tx.conn.execute(
            select(func.count())
            .select_from(profile_object)
            .where(profile_object.c.domain_name == DOMAIN)
        ).scalar_one()
    assert objects == 2


def test_the_profiles_merged_into_one_are_found_in_one_statement_however_deep(
    services: Services, domain: str
) -> None:
    """Auto-merges make chains (the profile just written becomes the main one); a walk of one
    query per level made every later auto-merge of a customer cost one statement more."""
    chain = [crm(services, n, f"P{n}").profile_id for n in range(1, 13)]
    for merged, main in zip(chain, chain[1:], strict=False):
        merge(services, main, [merged])
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    engine = services.database.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        with services.read() as tx:
            held = profiles.absorbed_profiles(tx, domain_name=DOMAIN, profile_ids=[chain[-1]])
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert held == {chain[-1]: set(chain)}
    assert len(statements) == 1


def test_no_statement_of_a_delete_names_more_profiles_than_a_chunk(
    services: Services, domain: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A profile can hold any number of profiles merged into it; past 32,766 of them (SQLite's
    limit of bound values; 65,535 on PostgreSQL) a statement naming them all fails, and with it
    the DeleteProfile. So every statement of the delete, its hooks' too (match rows, features,
    merge logs, contact records), names them a chunk at a time. The chunk is made 2 here for
    7 profiles: a statement binding more than 2 of them names them unchunked."""
    with services.write() as tx:
        update_domain(tx, domain_name=DOMAIN, changes={"Matching": {"Enabled": True}})
    main, *others = (crm(services, n, f"P{n}").profile_id for n in range(1, 8))
    undone = merge(services, main, others[:3])
    with services.write() as tx:
        service.undo_merge(tx, domain_name=DOMAIN, merge_id=undone)
    merge(services, main, others)
    ids = {main, *others}
    before = rows_naming(services, ids)
    assert before["merge_log"] == 2 and before["ml_feature"] > 0 and before["profile_key"] > 0
    named: list[int] = []

    def count(conn: Any, cursor: Any, statement: str, parameters: Any, *rest: Any) -> None:
        executemany = rest[-1]
        for row in parameters if executemany else [parameters]:
            values = row.values() if isinstance(row, dict) else row
            named.append(sum(1 for v in values if v in ids))

    monkeypatch.setattr(in_lists, "VALUES_PER_STATEMENT", 2)
    engine = services.database.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        with services.write() as tx:
            profiles.delete_profile(tx, domain_name=DOMAIN, profile_id=main)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert max(named) == 2
    left = rows_naming(services, ids)
    assert left == dict.fromkeys(left, 0)


def live_id(services: Services, profile_id: str) -> str | None:
    with services.read() as tx:
        return profiles.resolve_profile_id(tx, domain_name=DOMAIN, profile_id=profile_id)


def by_email(services: Services, email: str) -> str:
    with services.write() as tx:
        return profiles.create_profile(
            tx, domain_name=DOMAIN, fields={"EmailAddress": email}, manual=False
        ).profile_id


def auto_merge_by_email(services: Services) -> int:
    """Rule matching on the email address, merging automatically; a full pass: its merges."""
    config = {
        "Enabled": True,
        "MatchingRules": [{"Rule": ["EmailAddress"]}],
        "MaxAllowedRuleLevelForMerging": 1,
    }
    with services.write() as tx:
        update_domain(tx, domain_name=DOMAIN, changes={"RuleBasedMatching": config})
        return matching.rebuild(tx, domain_name=DOMAIN).merges


def kept_apart_ids(services: Services) -> list[list[str]]:
    with services.read() as tx:
        return [
            sorted(ids)
            for ids in tx.conn.execute(
                select(kept_apart.c.profile_ids).where(kept_apart.c.domain_name == DOMAIN)
            ).scalars()
        ]


@pytest.mark.parametrize("deleted", ["main", "merged"])
def test_the_others_of_an_undone_merge_stay_apart_when_one_is_deleted(
    services: Services, domain: str, deleted: str
) -> None:
    """X took A and B by hand (they match: one email address), and the merge was undone. Then
    X, or A, is deleted, and with it the merge's log (it holds their before-images). The
    profiles left were kept apart by the log: they still are, by a full pass and on a write,
    though nothing of the deleted one is kept."""
    x = by_email(services, "a@x.com")
    a, b = by_email(services, "a@x.com"), by_email(services, "a@x.com")
    merge(services, x, [a, b])
    with services.write() as tx:
        [log] = service.list_merges(tx, domain_name=DOMAIN)
        service.undo_merge(tx, domain_name=DOMAIN, merge_id=log.merge_id)
    gone, *left = [x, a, b] if deleted == "main" else [a, x, b]
    with services.write() as tx:
        profiles.delete_profile(tx, domain_name=DOMAIN, profile_id=gone)

    assert auto_merge_by_email(services) == 0
    with services.write() as tx:
        profiles.update_profile(
            tx, domain_name=DOMAIN, profile_id=left[0], changes={"FirstName": "Ann"}
        )
    assert [live_id(services, pid) for pid in left] == left
    # Kept apart by their ids alone: nothing names the deleted profile.
    assert kept_apart_ids(services) == [sorted(left)]
    gone_rows = rows_naming(services, {gone})
    assert gone_rows == dict.fromkeys(gone_rows, 0)
    with services.read() as tx:
        assert service.list_merges(tx, domain_name=DOMAIN) == []
    # A new profile matching both takes one of them, never both.
    c = by_email(services, "a@x.com")
    assert sorted(live_id(services, pid) for pid in left).count(c) == 1

    # Deleting another of them leaves one profile, kept apart from nothing: the ids go too.
    with services.write() as tx:
        profiles.delete_profile(tx, domain_name=DOMAIN, profile_id=live_id(services, left[1]))
    assert kept_apart_ids(services) == []
