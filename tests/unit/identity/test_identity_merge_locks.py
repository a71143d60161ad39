"""Merging, undoing and auto-merging against concurrent writers on PostgreSQL (several server
processes, READ COMMITTED). Each test runs one write, keeps it open while the other starts and
waits for one of its locks (or finishes, had it none to wait for), then commits it
(`tests.support.lock_waits`): the interleaving is the same on every run.

A merge locks its profiles before reading them, so the second of two crossed or overlapping
merges is refused, and a write to a profile being merged is either seen by the merge or
follows it; an undo locks too, so the second undo of a merge is refused; a write that gives a
profile a merging match digest locks the digest, so of two profiles given the same values at
once the second sees the first and merges. An auto-merge locks its group's rows before its
digests (store.advisory's order) and merges the group as it is once all are locked. (SQLite's
one writer serialises all of these.)"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import select, text
from tests.support.backends import database_url_for
from tests.support.lock_waits import (
    WAIT_BOUND_SECONDS,
    second_writer_meets_first,
    until_blocked_by,
)

from openprofiles.app import build_services
from openprofiles.context import Services, Tx
from openprofiles.domains.service import update_domain
from openprofiles.errors import BadRequest, NotFound
from openprofiles.identity import matching
from openprofiles.identity import service as identity
from openprofiles.identity.models import MergeRecord, UndoResult
from openprofiles.ingest.pipeline import ingest_object
from openprofiles.objects.service import list_profile_objects
from openprofiles.profiles import service as profiles
from openprofiles.settings import Settings
from openprofiles.store.schema import kept_apart, profile_key

from .conftest import DOMAIN, fields_of, ingest, make_domain, new_profile, search


@pytest.fixture
def pg(tmp_path) -> Iterator[Services]:
    with database_url_for("postgres", tmp_path) as url:
        services = build_services(Settings(data_dir=tmp_path / "data", database_url=url))
        make_domain(services)
        try:
            yield services
        finally:
            services.database.dispose()


def _then(services: Services, first: Callable[[Tx], Any], second: Callable[[Tx], Any]) -> Any:
    """`second_writer_meets_first`, the second writer's work in a write transaction of its own:
    what it returned, or the exception it raised."""

    def run() -> Any:
        with services.write() as tx:
            return second(tx)

    return second_writer_meets_first(services, first, run)


def _merge(main: str, merged: str) -> Callable[[Tx], MergeRecord]:
    return lambda tx: identity.merge_profiles(
        tx, domain_name=DOMAIN, main_profile_id=main, profile_ids=[merged]
    )


def _update(profile_id: str, **changes: str) -> Callable[[Tx], Any]:
    return lambda tx: profiles.update_profile(
        tx, domain_name=DOMAIN, profile_id=profile_id, changes=changes
    )


def _create(**fields: str) -> Callable[[Tx], str]:
    def run(tx: Tx) -> str:
        return profiles.create_profile(tx, domain_name=DOMAIN, fields=fields).profile_id

    return run


def _writing_in_a_thread(
    services: Services, work: Callable[[Tx], Any]
) -> tuple[threading.Thread, list[Any]]:
    """A thread (not started) that runs `work` in a write transaction of its own, and the list
    that receives its result, or the exception it raised."""
    out: list[Any] = []

    def run() -> None:
        try:
            with services.write() as tx:
                out.append(work(tx))
        except BaseException as exc:  # handed to the test
            out.append(exc)

    return threading.Thread(target=run), out


def _live(services: Services, profile_id: str) -> str | None:
    with services.read() as tx:
        return profiles.resolve_profile_id(tx, domain_name=DOMAIN, profile_id=profile_id)


# ---------------------------------------------------------------------------- merge against merge


def test_of_two_crossed_merges_the_second_is_refused(pg):
    ada = new_profile(pg, FirstName="Ada", EmailAddress="ada@example.com")
    bob = new_profile(pg, FirstName="Bob", PhoneNumber="+12065550100")
    refused = _then(pg, _merge(ada, bob), _merge(bob, ada))
    assert isinstance(refused, NotFound), refused
    assert f"merged into {ada}" in refused.message
    # No cycle: both ids lead to Ada, who is live.
    assert _live(pg, ada) == ada
    assert _live(pg, bob) == ada


def test_of_two_merges_of_one_profile_the_second_is_refused(pg):
    ada = new_profile(pg, FirstName="Ada")
    bob = new_profile(pg, LastName="Bobson", EmailAddress="bob@example.com")
    cid = new_profile(pg, FirstName="Cid")
    refused = _then(pg, _merge(ada, bob), _merge(cid, bob))
    assert isinstance(refused, NotFound), refused
    assert _live(pg, bob) == ada
    assert fields_of(pg, ada)["LastName"] == "Bobson"
    assert "LastName" not in fields_of(pg, cid)
    assert search(pg, "_email", "bob@example.com") == [ada]


# ---------------------------------------------------------------------------- merge against writes


def test_an_update_of_the_main_profile_is_kept_by_the_merge_that_waited(pg):
    ada = new_profile(pg, FirstName="Ada")
    bob = new_profile(pg, FirstName="Bob", EmailAddress="bob@example.com")
    merged = _then(pg, _update(ada, LastName="Lovelace"), _merge(ada, bob))
    assert isinstance(merged, MergeRecord), merged
    assert fields_of(pg, ada) == {
        "FirstName": "Ada",
        "LastName": "Lovelace",
        "EmailAddress": "bob@example.com",
    }


def test_an_update_of_the_merged_profile_reaches_the_main_profile(pg):
    ada = new_profile(pg, FirstName="Ada")
    bob = new_profile(pg, FirstName="Bob")
    merged = _then(pg, _update(bob, LastName="Bobson"), _merge(ada, bob))
    assert isinstance(merged, MergeRecord), merged
    assert fields_of(pg, ada) == {"FirstName": "Ada", "LastName": "Bobson"}


def test_a_key_added_to_the_merged_profile_moves_with_it(pg):
    ada = new_profile(pg, FirstName="Ada")
    bob = new_profile(pg, FirstName="Bob")

    def add_key(tx: Tx) -> None:
        profiles.add_profile_key(
            tx, domain_name=DOMAIN, profile_id=bob, key_name="loyalty", values=["L-1"]
        )

    merged = _then(pg, add_key, _merge(ada, bob))
    assert isinstance(merged, MergeRecord), merged
    assert ("loyalty", "L-1") in {(k.key_name, k.value) for k in merged.moved_keys}
    with pg.read() as tx:
        holders = tx.conn.execute(
            select(profile_key.c.profile_id).where(
                profile_key.c.domain_name == DOMAIN, profile_key.c.key_name == "loyalty"
            )
        ).scalars()
        assert list(holders) == [ada]
    assert search(pg, "loyalty", "L-1") == [ada]


def test_an_object_ingested_onto_the_merged_profile_moves_with_it(pg):
    ada = new_profile(pg, EmailAddress="ada@example.com")
    bob = new_profile(pg, EmailAddress="bob@example.com")

    def put_object(tx: Tx) -> None:
        # Found by Bob's email: the object and its field go to Bob.
        ingest_object(
            tx,
            domain_name=DOMAIN,
            object_type_name="Crm",
            source={"id": "crm-1", "email": "bob@example.com", "first": "Bea"},
            raw="{}",
        )

    merged = _then(pg, put_object, _merge(ada, bob))
    assert isinstance(merged, MergeRecord), merged
    assert fields_of(pg, ada)["FirstName"] == "Bea"
    with pg.read() as tx:
        objects, _ = list_profile_objects(
            tx, domain_name=DOMAIN, object_type_name="Crm", profile_id=ada, limit=10
        )
    assert len(objects) == 1


# ---------------------------------------------------------------------------- undo against undo


def test_of_two_undos_of_one_merge_the_second_is_refused(pg):
    ada = new_profile(pg, FirstName="Ada", EmailAddress="ada@example.com")
    bob = new_profile(pg, FirstName="Bob", EmailAddress="bob@example.com")
    ingest(pg, {"id": "crm-b", "email": "bob@example.com"})
    with pg.write() as tx:
        merge_id = _merge(ada, bob)(tx).merge_id

    def undo(tx: Tx) -> UndoResult:
        return identity.undo_merge(tx, domain_name=DOMAIN, merge_id=merge_id)

    undone: list[UndoResult] = []
    refused = _then(pg, lambda tx: undone.append(undo(tx)), undo)
    [first] = undone
    assert first.objects_moved_back == 1
    assert isinstance(refused, BadRequest), refused
    assert refused.message == f"The merge {merge_id} was already undone."
    assert _live(pg, bob) == bob
    assert search(pg, "_email", "bob@example.com") == [bob]
    with pg.read() as tx:
        assert identity.get_merge(tx, domain_name=DOMAIN, merge_id=merge_id).undo == first


# ---------------------------------------------------------------------------- auto-merge


def _merge_by_account(services: Services) -> None:
    with services.write() as tx:
        update_domain(
            tx,
            domain_name=DOMAIN,
            changes={
                "RuleBasedMatching": {
                    "Enabled": True,
                    "MatchingRules": [{"Rule": ["AccountNumber"]}],
                    "MaxAllowedRuleLevelForMatching": 1,
                    "MaxAllowedRuleLevelForMerging": 1,
                }
            },
        )
        matching.rebuild(tx, domain_name=DOMAIN)


def test_two_profiles_created_at_once_with_one_account_are_merged(pg):
    _merge_by_account(pg)

    def create(**fields: str) -> Callable[[Tx], str]:
        return lambda tx: (
            profiles.create_profile(
                tx, domain_name=DOMAIN, fields={"AccountNumber": "A-1", **fields}
            ).profile_id
        )

    created: list[str] = []
    lovelace = _then(
        pg, lambda tx: created.append(create(FirstName="Ada")(tx)), create(LastName="Lovelace")
    )
    assert isinstance(lovelace, str), lovelace
    [ada] = created
    # The second write saw the first profile once it was committed, and merged it.
    assert _live(pg, ada) == _live(pg, lovelace) == lovelace
    assert fields_of(pg, lovelace) == {
        "AccountNumber": "A-1",
        "FirstName": "Ada",
        "LastName": "Lovelace",
    }


def test_a_match_deleted_meanwhile_is_left_out_of_the_auto_merge(pg):
    _merge_by_account(pg)
    ada = new_profile(pg, FirstName="Ada")
    gone = new_profile(pg, AccountNumber="A-1", EmailAddress="gone@example.com")

    def delete(tx: Tx) -> None:
        profiles.delete_profile(tx, domain_name=DOMAIN, profile_id=gone)

    updated = _then(pg, delete, _update(ada, AccountNumber="A-1"))
    assert not isinstance(updated, BaseException), updated
    # The erased customer's data did not come back on Ada.
    assert fields_of(pg, ada) == {"FirstName": "Ada", "AccountNumber": "A-1"}
    assert search(pg, "_email", "gone@example.com") == []
    with pg.read() as tx:
        assert identity.list_merges(tx, domain_name=DOMAIN) == []


def test_a_member_that_left_the_group_while_its_lock_was_awaited_is_not_merged(pg):
    """Bob's account is being changed (his row locked) when a new profile with his old account
    auto-merges its group, read as committed: Bob. The merge waits for Bob's row, then decides
    on the group as it is: Bob has left it. It used to merge him on what it read before."""
    _merge_by_account(pg)
    bob = new_profile(pg, LastName="Bobson", AccountNumber="A-1")

    def create_ada(tx: Tx) -> str:
        return profiles.create_profile(
            tx, domain_name=DOMAIN, fields={"FirstName": "Ada", "AccountNumber": "A-1"}
        ).profile_id

    ada = _then(pg, _update(bob, AccountNumber="B-2"), create_ada)
    assert isinstance(ada, str), ada
    assert _live(pg, bob) == bob
    assert fields_of(pg, bob) == {"LastName": "Bobson", "AccountNumber": "B-2"}
    assert fields_of(pg, ada) == {"FirstName": "Ada", "AccountNumber": "A-1"}
    with pg.read() as tx:
        assert identity.list_merges(tx, domain_name=DOMAIN) == []


def test_an_auto_merge_that_waited_merges_the_group_as_it_is_then(pg):
    """A new profile, Lovelace, shares an account with Pat (level 1) and an email with Quinn
    (level 2). Pat is leaving the account (a write holds his row), so Lovelace's merge waits for
    him; once he has left, her group is Quinn's. Quinn is held by another writer, whom she
    waits for in turn (not holding her match digests then: store.advisory's order), and she
    merges Quinn as that writer left her. She used to merge Pat, on the group read before."""
    _merge_by_account_then_email(pg)
    pat = new_profile(pg, LastName="Pat", AccountNumber="A-1")
    quinn = new_profile(pg, LastName="Quinn", EmailAddress="q@example.com")
    lovelace, out = _writing_in_a_thread(
        pg,
        _create(FirstName="Ada", AccountNumber="A-1", EmailAddress="q@example.com"),
    )
    with pg.write() as holding_quinn:
        profiles.lock_live_profile(holding_quinn, domain_name=DOMAIN, profile_id=quinn)
        with pg.write() as moving_pat:
            _update(pat, AccountNumber="B-2")(moving_pat)
            lovelace.start()
            until_blocked_by(pg, _pid(moving_pat), "the auto-merge")
        until_blocked_by(pg, _pid(holding_quinn), "the auto-merge")
        # Waiting for a row, she holds no match digest another writer could be waiting for.
        assert _advisory_locks_of_waiters(pg, _pid(holding_quinn)) == 0
        _update(quinn, MiddleName="Q")(holding_quinn)
    lovelace.join(WAIT_BOUND_SECONDS)
    [ada] = out
    assert isinstance(ada, str), ada
    assert _live(pg, pat) == pat
    assert fields_of(pg, pat) == {"LastName": "Pat", "AccountNumber": "B-2"}
    assert _live(pg, quinn) == ada
    assert fields_of(pg, ada) == {
        "FirstName": "Ada",
        "MiddleName": "Q",
        "LastName": "Quinn",
        "AccountNumber": "A-1",
        "EmailAddress": "q@example.com",
    }


def test_an_auto_merge_and_a_write_of_its_member_adding_a_digest_do_not_deadlock(pg):
    """Bob is being updated (his row locked) when a new profile with his account and an email
    auto-merges him; then Bob's write gives him that email. The auto-merge waited for Bob's row
    before taking the digests it adds (store.advisory's order), so Bob's write takes the email's
    digest and finishes, and the merge goes on. It used to hold the email's digest while it
    waited for Bob: a deadlock, which PostgreSQL ended after a second by failing one of them."""
    _merge_by_account_then_email(pg)
    bob = new_profile(pg, LastName="Bobson", AccountNumber="A-1")
    merging, out = _writing_in_a_thread(
        pg,
        _create(FirstName="Ada", AccountNumber="A-1", EmailAddress="ada@example.com"),
    )
    with pg.write() as tx:
        profiles.lock_live_profile(tx, domain_name=DOMAIN, profile_id=bob)
        merging.start()
        until_blocked_by(pg, _pid(tx), "the auto-merge")
        _update(bob, EmailAddress="ada@example.com")(tx)
    merging.join(WAIT_BOUND_SECONDS)
    [ada] = out
    assert isinstance(ada, str), ada
    assert _live(pg, bob) == ada
    assert fields_of(pg, ada) == {
        "FirstName": "Ada",
        "LastName": "Bobson",
        "AccountNumber": "A-1",
        "EmailAddress": "ada@example.com",
    }


def _merge_by_account_then_email(services: Services) -> None:
    with services.write() as tx:
        update_domain(
            tx,
            domain_name=DOMAIN,
            changes={
                "RuleBasedMatching": {
                    "Enabled": True,
                    "MatchingRules": [{"Rule": ["AccountNumber"]}, {"Rule": ["EmailAddress"]}],
                    "MaxAllowedRuleLevelForMatching": 2,
                    "MaxAllowedRuleLevelForMerging": 2,
                }
            },
        )
        matching.rebuild(tx, domain_name=DOMAIN)


def _advisory_locks_of_waiters(services: Services, pid: int) -> int:
    """The advisory locks held by the transactions waiting for one that `pid` holds."""
    with services.database.engine.connect() as watcher:
        return int(
            watcher.execute(
                text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                    "AND pid IN (SELECT pid FROM pg_stat_activity "
                    "WHERE :pid = ANY(pg_blocking_pids(pid)))"
                ),
                {"pid": pid},
            ).scalar_one()
        )


def _pid(tx: Tx) -> int:
    return int(tx.conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def test_a_write_that_keeps_its_match_waits_for_no_auto_merge(pg):
    """Ada, who has the account, is being updated (her row locked) when a write gives Bob that
    account and auto-merges (holding Bob's new digest, waiting for Ada's row); then Ada's write
    recomputes her digests. It takes no lock on a digest she had, so the two do not deadlock.
    (The first write goes on after the second waits: more than `second_writer_meets_first`
    does, hence the thread here.)"""
    _merge_by_account(pg)
    ada = new_profile(pg, FirstName="Ada", AccountNumber="A-1")
    bob = new_profile(pg, LastName="Bobson", AccountNumber="B-1")
    joining, out = _writing_in_a_thread(pg, _update(bob, AccountNumber="A-1"))
    with pg.write() as tx:
        profiles.lock_live_profile(tx, domain_name=DOMAIN, profile_id=ada)
        pid = tx.conn.execute(text("SELECT pg_backend_pid()")).scalar()
        joining.start()
        until_blocked_by(pg, pid, "the auto-merge")
        _update(ada, MiddleName="King")(tx)
    joining.join(WAIT_BOUND_SECONDS)
    assert not isinstance(out[0], BaseException), out[0]
    assert _live(pg, ada) == _live(pg, bob) == bob
    assert fields_of(pg, bob) == {
        "FirstName": "Ada",
        "MiddleName": "King",
        "LastName": "Bobson",
        "AccountNumber": "A-1",
    }


def test_a_type_deleted_while_a_merge_is_undone_is_scrubbed_from_the_restored_profile(
    pg: Services,
) -> None:
    """DeleteProfileObjectType waiting behind an undo that moves the type's objects back to
    the restored profile: it looks for the type's profiles again after each lock, so it scrubs
    the restored one too. It used to pick its profiles before waiting, and the restored profile
    kept the fields the deleted type had written."""
    from openprofiles.object_types.service import delete_object_type

    main = new_profile(pg, LastName="Main")
    other = ingest(pg, {"id": "c9", "email": "only-crm@example.com", "first": "FromCrm"})
    with pg.write() as tx:
        merge_id = _merge(main, other.profile_id)(tx).merge_id

    def delete_crm(tx: Tx) -> None:
        delete_object_type(tx, domain_name=DOMAIN, name="Crm")

    _then(pg, lambda tx: identity.undo_merge(tx, domain_name=DOMAIN, merge_id=merge_id), delete_crm)

    assert _live(pg, other.profile_id) == other.profile_id
    restored = fields_of(pg, other.profile_id)
    assert "FirstName" not in restored and "EmailAddress" not in restored
    assert search(pg, "_email", "only-crm@example.com") == []


# ------------------------------------------------------------------------ deletion against deletion


def _kept_apart(services: Services) -> list[list[str]]:
    with services.read() as tx:
        return [
            sorted(ids)
            for ids in tx.conn.execute(
                select(kept_apart.c.profile_ids).where(kept_apart.c.domain_name == DOMAIN)
            ).scalars()
        ]


@pytest.mark.postgres
def test_of_two_deletions_of_profiles_kept_apart_neither_id_stays(pg):
    """A took B, C and E by hand, the merge was undone, and A was deleted: B, C and E stay
    apart through `kept_apart`. B and C are deleted at once. The second deletion waits for the
    first, then must rewrite the row the first left ({C, E}): it waited for the row the first
    replaced, skipped it as deleted, did not see the new one, and C's id stayed, erased."""
    a, b, c, e = (new_profile(pg, FirstName=name) for name in ("A", "B", "C", "E"))
    with pg.write() as tx:
        merge_id = identity.merge_profiles(
            tx, domain_name=DOMAIN, main_profile_id=a, profile_ids=[b, c, e]
        ).merge_id
    with pg.write() as tx:
        identity.undo_merge(tx, domain_name=DOMAIN, merge_id=merge_id)
    with pg.write() as tx:
        profiles.delete_profile(tx, domain_name=DOMAIN, profile_id=a)
    assert _kept_apart(pg) == [sorted([b, c, e])]

    def delete(profile_id: str) -> Callable[[Tx], None]:
        return lambda tx: profiles.delete_profile(tx, domain_name=DOMAIN, profile_id=profile_id)

    out = _then(pg, delete(b), delete(c))

    assert not isinstance(out, BaseException), out
    # E alone is kept apart from nothing: no row is left, and none names B or C.
    assert _kept_apart(pg) == []
