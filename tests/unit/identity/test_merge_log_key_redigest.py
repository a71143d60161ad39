"""A key's ContentType changing after a merge (profiles.key_reindex) re-digests the merge log's
moved keys of that name too (identity.service.redigest_logged_keys): an undo then moves the
merged profile's value back instead of leaving it on the main profile, tells the main
profile's own value from one added since, and DeleteProfileKey of the value takes it out of
the log; every page of logs, and (PostgreSQL) an undo that meets the change waits for it.
On SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.support.lock_waits import (
    in_its_own_transaction,
    postgres_services,
    second_writer_meets_first,
)

from openprofiles.context import Services, Tx
from openprofiles.identity import service as identity
from openprofiles.object_types.service import put_object_type
from openprofiles.profiles import service as profiles

from .conftest import CRM, DOMAIN, make_domain, new_profile, search
from .test_merge_erasure import delete_crm, merge, sealed_logs

MAIN_VALUE = "Ann.Main@Example.com"
MERGED_VALUE = "Bob.Merged@Example.COM"


def add_key(services: Services, profile_id: str, value: str) -> None:
    with services.write() as tx:
        profiles.add_profile_key(
            tx, domain_name=DOMAIN, profile_id=profile_id, key_name="member", values=[value]
        )


def define_member_as_email(services: Services) -> None:
    """A type whose key `member` is an EMAIL_ADDRESS: the key was a STRING (undefined) so far."""
    define_member_as(services, "EMAIL_ADDRESS")


def define_member_as(services: Services, content_type: str) -> None:
    with services.write() as tx:
        put_member_type(tx, content_type)


def put_member_type(tx: Tx, content_type: str) -> None:
    params: dict[str, Any] = {
        **CRM,
        "Fields": {
            **CRM["Fields"],
            "ref": {"Source": "_source.ref", "ContentType": content_type},
        },
        # Its own unique key, and `member` over `ref`.
        "Keys": {"memberRowId": CRM["Keys"]["crmId"], "member": [{"FieldNames": ["ref"]}]},
    }
    put_object_type(tx, domain_name=DOMAIN, name="Member", params=params)


def merged_then_retyped(services: Services) -> tuple[str, str, str]:
    """(main id, merged id, merge id): two profiles with a `member` value each, merged, then
    the key defined as an EMAIL_ADDRESS."""
    main_id = new_profile(services, FirstName="Ann")
    merged_id = new_profile(services, FirstName="Bob")
    add_key(services, main_id, MAIN_VALUE)
    add_key(services, merged_id, MERGED_VALUE)
    merge_id = merge(services, main_id, merged_id)
    define_member_as_email(services)
    # The live index was re-digested (profiles.key_reindex): both values are on the main now.
    assert search(services, "member", MERGED_VALUE.lower()) == [main_id]
    return main_id, merged_id, merge_id


def test_undo_moves_a_retyped_key_back(services, domain):
    main_id, merged_id, merge_id = merged_then_retyped(services)
    with services.write() as tx:
        result = identity.undo_merge(tx, domain_name=DOMAIN, merge_id=merge_id)
    assert search(services, "member", MERGED_VALUE.lower()) == [merged_id]
    assert search(services, "member", MAIN_VALUE.lower()) == [main_id]
    assert result.missing_keys == ()
    # The main profile's own value had been there before the merge: not added since.
    assert result.kept_keys == ()


def test_deleting_a_retyped_key_takes_it_out_of_the_merge_log(services, domain):
    main_id, merged_id, merge_id = merged_then_retyped(services)
    assert MERGED_VALUE in sealed_logs(services)
    with services.write() as tx:
        profiles.delete_profile_key(
            tx, domain_name=DOMAIN, profile_id=main_id, key_name="member", values=[MERGED_VALUE]
        )
    assert search(services, "member", MERGED_VALUE.lower()) == []
    assert MERGED_VALUE not in sealed_logs(services)
    # An undo does not bring the erased value back to the merged profile.
    with services.write() as tx:
        identity.undo_merge(tx, domain_name=DOMAIN, merge_id=merge_id)
    assert search(services, "member", MERGED_VALUE.lower()) == []
    assert MERGED_VALUE not in sealed_logs(services)


def test_undo_tells_the_main_profiles_own_retyped_value_from_one_added_since(services, domain):
    """Only the main profile holds a value of the key: the log's "main_keys" pair of it is
    re-digested, so the undo does not list it as kept (added since the merge)."""
    main_id = new_profile(services, FirstName="Ann")
    merged_id = new_profile(services, FirstName="Bob")
    add_key(services, main_id, MAIN_VALUE)
    merge_id = merge(services, main_id, merged_id)
    define_member_as_email(services)
    add_key(services, main_id, "Later@Example.com")
    with services.write() as tx:
        result = identity.undo_merge(tx, domain_name=DOMAIN, merge_id=merge_id)
    assert {(k.key_name, k.value) for k in result.kept_keys} == {("member", "Later@Example.com")}
    assert search(services, "member", MAIN_VALUE.lower()) == [main_id]


def test_a_second_change_redigests_the_log_again(services, domain):
    """EMAIL_ADDRESS, then NAME (the defining type re-defined): the log follows each change."""
    main_id, merged_id, merge_id = merged_then_retyped(services)
    define_member_as(services, "NAME")
    with services.write() as tx:
        result = identity.undo_merge(tx, domain_name=DOMAIN, merge_id=merge_id)
    assert search(services, "member", MERGED_VALUE) == [merged_id]
    assert search(services, "member", MAIN_VALUE) == [main_id]
    assert result.missing_keys == () and result.kept_keys == ()


def test_every_page_of_logs_is_redigested(services, domain, monkeypatch):
    monkeypatch.setattr(identity, "REWRITE_PAGE", 2)
    pairs = []
    for i in range(5):
        main_id = new_profile(services, FirstName=f"Main{i}")
        merged_id = new_profile(services, FirstName=f"Merged{i}")
        add_key(services, merged_id, f"User{i}@Example.COM")
        pairs.append((merged_id, merge(services, main_id, merged_id)))
    define_member_as_email(services)
    for i, (merged_id, merge_id) in enumerate(pairs):
        with services.write() as tx:
            result = identity.undo_merge(tx, domain_name=DOMAIN, merge_id=merge_id)
        assert result.missing_keys == ()
        assert search(services, "member", f"user{i}@example.com") == [merged_id]


@pytest.mark.postgres
def test_an_undo_waits_for_a_change_of_the_keys_content_type(tmp_path: Path) -> None:
    """The undo started while PutProfileObjectType re-digested the key: it waits, then reads
    the log as the change left it and moves the value back under its new digest."""
    with postgres_services(tmp_path) as services:
        make_domain(services)
        main_id = new_profile(services, FirstName="Ann")
        merged_id = new_profile(services, FirstName="Bob")
        add_key(services, merged_id, MERGED_VALUE)
        merge_id = merge(services, main_id, merged_id)
        outcome = second_writer_meets_first(
            services,
            lambda tx: put_member_type(tx, "EMAIL_ADDRESS"),
            in_its_own_transaction(
                services,
                lambda tx: identity.undo_merge(tx, domain_name=DOMAIN, merge_id=merge_id),
            ),
        )
        assert not isinstance(outcome, BaseException), outcome
        assert outcome.missing_keys == ()
        assert search(services, "member", MERGED_VALUE.lower()) == [merged_id]


def test_deleting_a_value_an_undo_listed_scrubs_it_though_it_has_no_normal_form(services, domain):
    """A value kept on the main profile by an undo, whose key was then defined as a
    PHONE_NUMBER it has no digit of: it stays indexed as written (profiles.key_digest), and
    DeleteProfileKey of it takes it out of the undo's listing too."""
    main_id = new_profile(services, FirstName="Ann")
    merged_id = new_profile(services, FirstName="Bob")
    merge_id = merge(services, main_id, merged_id)
    add_key(services, main_id, "Unlisted")
    with services.write() as tx:
        result = identity.undo_merge(tx, domain_name=DOMAIN, merge_id=merge_id)
    assert [(k.key_name, k.value) for k in result.kept_keys] == [("member", "Unlisted")]
    define_member_as(services, "PHONE_NUMBER")
    assert search(services, "member", "Unlisted") == [main_id]
    with services.write() as tx:
        profiles.delete_profile_key(
            tx, domain_name=DOMAIN, profile_id=main_id, key_name="member", values=["Unlisted"]
        )
    assert search(services, "member", "Unlisted") == []
    assert "Unlisted" not in sealed_logs(services)


def test_deleting_another_type_keeps_an_undos_listed_value_with_no_normal_form(services, domain):
    """The undo's listing of a value the main profile still holds stays when a type that
    did not write it is deleted, though the value has no normal form under its key's
    ContentType (it is held as written)."""
    with services.write() as tx:
        put_object_type(tx, domain_name=DOMAIN, name="Crm", params=CRM)
    main_id = new_profile(services, FirstName="Ann")
    merged_id = new_profile(services, FirstName="Bob")
    merge_id = merge(services, main_id, merged_id)
    add_key(services, main_id, "Unlisted")
    with services.write() as tx:
        identity.undo_merge(tx, domain_name=DOMAIN, merge_id=merge_id)
    define_member_as(services, "PHONE_NUMBER")
    delete_crm(services)
    assert search(services, "member", "Unlisted") == [main_id]
    assert '["member", "Unlisted"]' in sealed_logs(services)
