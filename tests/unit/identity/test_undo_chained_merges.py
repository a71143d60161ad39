"""Undoing one of several merges into the same main profile (A <- B, then A <- C, B and C
sharing a key value or a field): what the still-standing merge brought or relies on stays on
the main profile, the undone profile gets its own data back, and undoing the other merge later
restores its profile whole and leaves the main profile as it was before both. Both databases."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from openprofiles.identity import service
from openprofiles.profiles import service as profiles

from .conftest import fields_of, new_profile, search

PHONE = "+12065550999"


def merge(services: Any, main: str, ids: list[str]) -> str:
    with services.write() as tx:
        return service.merge_profiles(
            tx, domain_name="ident", main_profile_id=main, profile_ids=ids
        ).merge_id


def undo(services: Any, merge_id: str) -> service.UndoResult:
    with services.write() as tx:
        return service.undo_merge(tx, domain_name="ident", merge_id=merge_id)


def add_key(services: Any, profile_id: str, name: str, value: str) -> None:
    with services.write() as tx:
        profiles.add_profile_key(
            tx, domain_name="ident", profile_id=profile_id, key_name=name, values=[value]
        )


def keys_of(services: Any, profile_id: str) -> dict[str, list[str]]:
    with services.read() as tx:
        return profiles.profile_keys(tx, domain_name="ident", profile_id=profile_id)


def phone_key(services: Any) -> tuple[str, str]:
    """The `_phone` key value PHONE is indexed under (normalized)."""
    probe = new_profile(services, PhoneNumber=PHONE)
    (value,) = keys_of(services, probe)["_phone"]
    with services.write() as tx:
        profiles.delete_profile(tx, domain_name="ident", profile_id=probe)
    return "_phone", value


def test_undoing_the_earlier_merge_keeps_a_key_the_later_merge_shares(services, domain):
    a = new_profile(services, FirstName="Alice")
    b = new_profile(services, FirstName="Bob")
    c = new_profile(services, FirstName="Carol")
    add_key(services, b, "loyalty", "L-77")
    add_key(services, c, "loyalty", "L-77")
    first = merge(services, a, [b])
    second = merge(services, a, [c])

    undone = undo(services, first)

    # A still holds C, whose key finds it; B has its own key back.
    assert sorted(search(services, "loyalty", "L-77")) == sorted([a, b])
    assert search(services, "_profileId", c) == [a]
    assert undone.missing_keys == ()
    assert fields_of(services, a) == {"FirstName": "Alice"}

    later = undo(services, second)

    assert later.missing_keys == ()
    assert sorted(search(services, "loyalty", "L-77")) == sorted([b, c])
    assert "loyalty" not in keys_of(services, a)
    assert keys_of(services, c)["loyalty"] == ["L-77"]
    assert fields_of(services, c) == {"FirstName": "Carol"}


@pytest.mark.parametrize("order", ["earlier first", "later first"])
def test_undoing_either_merge_keeps_what_the_other_shares(services, domain, order):
    a = new_profile(services, FirstName="Alice")
    b = new_profile(services, FirstName="Bob")
    c = new_profile(services, FirstName="Carol")
    add_key(services, b, "loyalty", "L-77")
    add_key(services, c, "loyalty", "L-77")
    first = merge(services, a, [b])
    second = merge(services, a, [c])
    undone, standing, back = (first, c, b) if order == "earlier first" else (second, b, c)

    undo(services, undone)

    assert sorted(search(services, "loyalty", "L-77")) == sorted([a, back])
    assert search(services, "_profileId", standing) == [a]
    undo(services, second if undone == first else first)
    assert sorted(search(services, "loyalty", "L-77")) == sorted([b, c])
    assert keys_of(services, a).get("loyalty") is None


def test_undoing_the_earlier_merge_keeps_shared_fields_and_derived_keys(services, domain):
    a = new_profile(services, FirstName="A", EmailAddress="a@x.com")
    b = new_profile(services, LastName="Bee", PhoneNumber=PHONE, PersonalEmailAddress="s@x.com")
    c = new_profile(services, LastName="Cee", PhoneNumber=PHONE, PersonalEmailAddress="s@x.com")
    phone = phone_key(services)
    keys_before = keys_of(services, a)
    first = merge(services, a, [b])
    second = merge(services, a, [c])

    undone = undo(services, first)

    # A holds C now as if B had never been merged: C's values, not B's.
    assert fields_of(services, a) == {
        "FirstName": "A",
        "EmailAddress": "a@x.com",
        "LastName": "Cee",
        "PhoneNumber": PHONE,
        "PersonalEmailAddress": "s@x.com",
    }
    assert fields_of(services, b) == {
        "LastName": "Bee",
        "PhoneNumber": PHONE,
        "PersonalEmailAddress": "s@x.com",
    }
    assert sorted(search(services, *phone)) == sorted([a, b])
    assert sorted(search(services, "_email", "s@x.com")) == sorted([a, b])
    assert "LastName" in undone.reverted_fields  # Bee gave way to Cee

    later = undo(services, second)

    assert later.missing_keys == ()
    assert fields_of(services, a) == {"FirstName": "A", "EmailAddress": "a@x.com"}
    assert fields_of(services, c) == {
        "LastName": "Cee",
        "PhoneNumber": PHONE,
        "PersonalEmailAddress": "s@x.com",
    }
    assert sorted(search(services, *phone)) == sorted([b, c])
    assert sorted(search(services, "_email", "s@x.com")) == sorted([b, c])
    assert keys_of(services, a) == keys_before


def test_a_whole_address_the_later_merge_would_have_brought_replaces_the_undone_one(
    services, domain
):
    a = new_profile(services, FirstName="A")
    b = new_profile(services, Address={"City": "Bville", "Country": "US"})
    c = new_profile(services, Address={"City": "Ctown", "PostalCode": "98101"})
    first = merge(services, a, [b])
    second = merge(services, a, [c])

    undo(services, first)

    assert fields_of(services, a)["Address"] == {"City": "Ctown", "PostalCode": "98101"}
    undo(services, second)
    assert fields_of(services, a) == {"FirstName": "A"}
    assert fields_of(services, c) == {"Address": {"City": "Ctown", "PostalCode": "98101"}}


def test_a_field_written_between_the_merges_is_not_rebased(services, domain):
    """A person set LastName between the merges: the later merge saw that value, not the
    earlier merge's, so undoing the earlier merge keeps it, and undoing the later one too."""
    a = new_profile(services, FirstName="A")
    b = new_profile(services, LastName="Bee")
    c = new_profile(services, LastName="Cee")
    first = merge(services, a, [b])
    with services.write() as tx:
        profiles.update_profile(tx, domain_name="ident", profile_id=a, changes={"LastName": "Set"})
    second = merge(services, a, [c])

    assert undo(services, first).kept_fields == ("LastName",)
    assert fields_of(services, a)["LastName"] == "Set"
    undo(services, second)
    assert fields_of(services, a) == {"FirstName": "A", "LastName": "Set"}


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_three_merges_sharing_a_key_and_a_field_undone_in_any_order(services, domain, order):
    a = new_profile(services, FirstName="Alice")
    donors = [new_profile(services, LastName=f"Last{n}", PhoneNumber=PHONE) for n in range(3)]
    for donor in donors:
        add_key(services, donor, "loyalty", "L-77")
    phone = phone_key(services)
    merges = [merge(services, a, [donor]) for donor in donors]
    standing = set(range(3))
    for n in order:
        result = undo(services, merges[n])
        standing.discard(n)
        assert result.missing_keys == ()
        back = [donors[m] for m in range(3) if m not in standing]
        holder = [a] if standing else []
        assert sorted(search(services, "loyalty", "L-77")) == sorted(back + holder)
        assert sorted(search(services, *phone)) == sorted(back + holder)
        if standing:
            # The earliest standing merge gives the last name, as if the others never were.
            assert fields_of(services, a)["LastName"] == f"Last{min(standing)}"
    assert fields_of(services, a) == {"FirstName": "Alice"}
    for n, donor in enumerate(donors):
        assert fields_of(services, donor) == {"LastName": f"Last{n}", "PhoneNumber": PHONE}
        assert keys_of(services, donor)["loyalty"] == ["L-77"]


def test_merges_made_in_one_transaction_are_told_apart_by_the_main_profiles_version(
    services, domain
):
    """An automatic merge on write can merge twice into the survivor in one transaction (one
    time for both): which came later is the one that left the main profile's later version."""
    a = new_profile(services, FirstName="Alice")
    b = new_profile(services, LastName="Bee")
    c = new_profile(services, LastName="Cee")
    add_key(services, b, "loyalty", "L-77")
    add_key(services, c, "loyalty", "L-77")
    with services.write() as tx:
        first, second = (
            service.merge_profiles(
                tx, domain_name="ident", main_profile_id=a, profile_ids=[donor]
            ).merge_id
            for donor in (b, c)
        )

    undo(services, first)

    assert sorted(search(services, "loyalty", "L-77")) == sorted([a, b])
    assert fields_of(services, a) == {"FirstName": "Alice", "LastName": "Cee"}
    undo(services, second)
    assert sorted(search(services, "loyalty", "L-77")) == sorted([b, c])
    assert fields_of(services, a) == {"FirstName": "Alice"}


def test_profiles_of_one_merge_sharing_a_key_each_get_it_back(services, domain):
    """Within one merge too: the second profile's row of the value was logged as not inserted
    (the first profile's had just been), and the undo used to find it gone."""
    a = new_profile(services, FirstName="Alice")
    b = new_profile(services, FirstName="Bob")
    c = new_profile(services, FirstName="Carol")
    add_key(services, b, "loyalty", "L-77")
    add_key(services, c, "loyalty", "L-77")

    result = undo(services, merge(services, a, [b, c]))

    assert result.missing_keys == ()
    assert sorted(search(services, "loyalty", "L-77")) == sorted([b, c])
    assert keys_of(services, c)["loyalty"] == ["L-77"]
