"""A profile's contact history is newest contact first — by when each contact started, not when
its record was stored — on every page, on SQLite and PostgreSQL: the profile page's contact tab
(ui.history.load), the contact-history query, and ListProfileObjects' listing, read a page at a
time from an index."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event
from tests.unit.integrations.integ_helpers import associate, ctr, make_domain, send

from openprofiles.contacts.history import contact_history, cursor_from_state, cursor_state
from openprofiles.context import Services
from openprofiles.objects.service import list_profile_contacts
from openprofiles.profiles.service import SearchCriterion, search_profiles
from openprofiles.ui import history

D = "history"
ADDRESS = "+17208401003"


@pytest.fixture
def domain(services: Services) -> str:
    make_domain(services, D)
    associate(services, D)
    return D


def profile_of(services: Services, contact_id: str) -> str:
    with services.read() as tx:
        page, _ = search_profiles(
            tx, domain_name=D, criteria=[SearchCriterion("_ctrContactId", (contact_id,))]
        )
    [(found, _)] = page
    return found.profile_id


def tab_pages(services: Services, profile_id: str) -> list[list[history.ObjectRow]]:
    """Every page of the profile page's contact tab, following its "Older" cursor."""
    pages: list[list[history.ObjectRow]] = []
    after = None
    while True:
        with services.read() as tx:
            view = history.load(
                tx, domain_name=D, profile_id=profile_id, object_type="CTR", after=after
            )
        assert view.is_contacts
        pages.append(view.rows)
        if view.next_after is None:
            return pages
        # As the page's link carries it: through JSON.
        after = json.loads(json.dumps(view.next_after))


def test_contacts_sent_one_by_one_are_shown_newest_contact_first(
    services: Services, domain: str
) -> None:
    """The reviewer's case: contacts of Jan 3, Jan 1 and Jan 2 stored in that order were shown
    Jan 2, Jan 1, Jan 3 (newest stored first). A record without a start comes last."""
    for contact_id, day in (("c1-2", 3), ("c1-0", 1), ("c1-1", 2)):
        send(services, ctr(contact_id, address=ADDRESS, start=f"2026-01-0{day}T09:00:00Z"))
    send(services, ctr("c1-undated", address=ADDRESS, start=""))
    profile_id = profile_of(services, "c1-0")

    [rows] = tab_pages(services, profile_id)
    # The start as the page writes it (ui.history.ShownTime: its UTC text).
    assert [str(r.columns[1]) for r in rows] == [
        "2026-01-03 09:00:00 UTC",
        "2026-01-02 09:00:00 UTC",
        "2026-01-01 09:00:00 UTC",
        "",
    ]
    with services.read() as tx:
        contacts = contact_history(tx, domain_name=D, profile_id=profile_id).contacts
    assert [c.contact_id for c in contacts] == ["c1-2", "c1-1", "c1-0", "c1-undated"]
    assert [c.unique_key for c in contacts] == [r.unique_key for r in rows]


def test_a_batch_is_paged_newest_first_with_no_contact_twice_or_missing(
    services: Services, domain: str
) -> None:
    """130 records stored in one transaction (one write time) in random order, some started at
    the same moment and some without a start: three pages of the tab, then pages of 7 of the
    query, list each contact once, newest first, the same way every time."""
    rng = random.Random(4)
    starts = [f"2025-{1 + n // 28:02d}-{1 + n % 28:02d}T08:00:00Z" for n in range(120)]
    starts += starts[:6]  # six pairs started at the same moment
    starts += [""] * 4  # no start
    records = [ctr(f"b-{n:03d}", address=ADDRESS, start=s) for n, s in enumerate(starts)]
    rng.shuffle(records)
    assert send(services, *records).accepted == 130
    profile_id = profile_of(services, "b-000")

    pages = tab_pages(services, profile_id)
    assert [len(p) for p in pages] == [50, 50, 30]
    shown = [str(r.columns[1]) for p in pages for r in p]
    dated = sorted((s for s in starts if s), reverse=True)
    assert shown == [s.replace("T", " ").replace("Z", " UTC") for s in dated] + [""] * 4
    keys = [r.unique_key for p in pages for r in p]
    assert len(set(keys)) == 130
    assert tab_pages(services, profile_id) == pages  # the same order again

    ids: list[str] = []
    after = None
    while True:
        with services.read() as tx:
            page = contact_history(tx, domain_name=D, profile_id=profile_id, limit=7, after=after)
        ids += [c.contact_id for c in page.contacts]
        if page.next_after is None:
            break
        after = cursor_from_state(json.loads(json.dumps(cursor_state(page.next_after))))
    by_id = {r["ContactId"]: r for r in records}
    assert sorted(ids) == sorted(by_id)
    assert [by_id[i]["InitiationTimestamp"] for i in ids] == dated + [""] * 4
    # Both listings are one order: the tab's rows are the query's records.
    with services.read() as tx:
        everything = contact_history(tx, domain_name=D, profile_id=profile_id, limit=200)
    assert [c.unique_key for c in everything.contacts] == keys
    assert everything.next_after is None


@pytest.fixture
def statements(services: Services) -> Iterator[list[tuple[str, Any]]]:
    """The SQL statements run meanwhile, with their parameters."""
    seen: list[tuple[str, Any]] = []

    def note(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        seen.append((statement, parameters))

    engine = services.database.engine
    event.listen(engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", note)


def test_a_page_reads_only_the_profiles_records_and_opens_only_its_own(
    services: Services, domain: str, statements: list[tuple[str, Any]]
) -> None:
    """Each page reads the profile's records of the type by ix_profile_object_profile (at most
    MaxProfileObjectCount of them to sort; no index in contact order, which cost every
    ingested record: migration 0024), and only the page's records are opened."""
    send(
        services,
        *(
            ctr(f"i-{n}", address=ADDRESS, start=f"2025-03-{1 + n:02d}T08:00:00Z")
            for n in range(30)
        ),
    )
    profile_id = profile_of(services, "i-0")
    statements.clear()
    with services.read() as tx:
        page, more = list_profile_contacts(
            tx, domain_name=D, object_type_name="CTR", profile_id=profile_id, limit=5
        )
    assert more and [json.loads(p.object_json)["ContactId"] for p in page] == [
        f"i-{n}" for n in range(29, 24, -1)
    ]
    if not services.settings.is_sqlite:
        # PostgreSQL's planner picks among indexes by the statistics of this tiny table, which
        # say nothing of a large one: its plan is not asserted.
        return
    [(query, parameters)] = [s for s in statements if "contact_start IS NOT NULL" in s[0]]
    with services.database.engine.begin() as conn:
        plan = " ".join(
            str(row[-1]) for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + query, parameters)
        )
    assert "ix_profile_object_profile" in plan, plan
