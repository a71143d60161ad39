"""Erasure after a merge: what DeleteProfileObjectType and DeleteProfileKey take away stays gone,
from the live index (a merged profile's derived keys on the main profile), from the merged-away
profile's row and from the merge log (spec §1.8); and merging Gender/GenderString and
PartyType/PartyTypeString as one field (FieldSourceProfileIds names only the enum fields)."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import event, select

from openprofiles.context import Services
from openprofiles.domains.service import update_domain
from openprofiles.identity import matching
from openprofiles.identity import service as identity
from openprofiles.object_types.service import delete_object_type
from openprofiles.profiles import service as profiles
from openprofiles.profiles.models import PROFILE_TABLE
from openprofiles.store.schema import merge_log, profile, profile_key, rule_match_digest

from .conftest import DOMAIN, fields_of, ingest, new_profile, search

SECRET = "crm-erase@example.org"


def merge(services: Services, main_id: str, *others: str, **sources: Any) -> str:
    with services.write() as tx:
        return identity.merge_profiles(
            tx,
            domain_name=DOMAIN,
            main_profile_id=main_id,
            profile_ids=list(others),
            field_sources=sources or None,
        ).merge_id


def delete_crm(services: Services) -> None:
    with services.write() as tx:
        delete_object_type(tx, domain_name=DOMAIN, name="Crm")


def sealed_logs(services: Services) -> str:
    """Every merge log of the domain, opened (payload and undo result), as one text."""
    out = []
    with services.read() as tx:
        cipher = tx.cipher(DOMAIN)
        for row in tx.conn.execute(select(merge_log)):
            out.append(identity._open_log(cipher, row))
            if row.undo_sealed is not None:
                out.append(
                    cipher.open_record("merge_log", f"{row.merge_id}/undo", bytes(row.undo_sealed))
                )
    return json.dumps(out)


def opened_row(services: Services, profile_id: str) -> dict[str, Any]:
    with services.read() as tx:
        row = tx.conn.execute(select(profile).where(profile.c.profile_id == profile_id)).one()
        return tx.cipher(DOMAIN).open_record(PROFILE_TABLE, profile_id, bytes(row.sealed))


def key_rows(services: Services, profile_id: str) -> set[tuple[str, str]]:
    with services.read() as tx:
        return {
            (r.key_name, r.origin)
            for r in tx.conn.execute(
                select(profile_key.c.key_name, profile_key.c.origin).where(
                    profile_key.c.profile_id == profile_id
                )
            )
        }


# ---------------------------------------------------------------------------- the live index


def test_deleting_a_type_unfinds_what_it_gave_a_merged_profile(services, domain):
    merged = ingest(services, {"id": "c1", "email": SECRET, "first": "Ann"}).profile_id
    main_id = new_profile(services, LastName="Lee")
    merge(services, main_id, merged)
    assert search(services, "_email", SECRET) == [main_id]
    assert search(services, "_fullName", "Ann") == [main_id]

    delete_crm(services)

    assert "EmailAddress" not in fields_of(services, main_id)
    # The merged profile's derived keys of the fields Crm wrote went with the type ...
    assert search(services, "_email", SECRET) == []
    assert search(services, "_fullName", "Ann") == []
    # ... its id still finds the survivor.
    assert search(services, "_profileId", merged) == [main_id]


def test_deleting_a_type_unfinds_a_value_the_main_profile_did_not_take(services, domain):
    """The main profile kept its own e-mail address: only the moved derived key held the merged
    profile's, which no field of the main profile names."""
    merged = ingest(services, {"id": "c2", "email": SECRET}).profile_id
    main_id = new_profile(services, EmailAddress="main@example.org")
    merge(services, main_id, merged)
    assert search(services, "_email", SECRET) == [main_id]

    delete_crm(services)

    assert search(services, "_email", SECRET) == []
    assert search(services, "_email", "main@example.org") == [main_id]


def test_deleting_a_type_unfinds_what_it_gave_through_a_chain_of_merges(services, domain):
    merged = ingest(services, {"id": "c7", "email": SECRET, "first": "Ann"}).profile_id
    middle = new_profile(services, LastName="Lee")
    main_id = new_profile(services, BusinessName="Acme")
    merge(services, middle, merged)
    merge(services, main_id, middle)
    assert search(services, "_email", SECRET) == [main_id]

    delete_crm(services)

    assert search(services, "_email", SECRET) == []
    assert search(services, "_fullName", "Ann Lee") == []
    assert search(services, "_fullName", "Lee") == [main_id]
    assert search(services, "_profileId", merged) == [main_id]


def test_a_value_a_person_set_stays_findable(services, domain):
    merged = new_profile(services, EmailAddress="kept@example.org", FirstName="Kay")
    crm = ingest(services, {"id": "c3", "email": SECRET}).profile_id
    main_id = new_profile(services, LastName="Main")
    merge(services, main_id, merged, crm)

    delete_crm(services)

    assert search(services, "_email", "kept@example.org") == [main_id]
    assert search(services, "_fullName", "Kay") == [main_id]
    assert search(services, "_email", SECRET) == []


def test_undo_takes_the_typed_rows_back_off_the_main_profile(services, domain):
    merged = ingest(services, {"id": "c4", "email": SECRET, "first": "Ann"}).profile_id
    main_id = new_profile(services, EmailAddress="main@example.org")
    merge_id = merge(services, main_id, merged)
    assert ("_email", "Crm") in key_rows(services, main_id)

    with services.write() as tx:
        identity.undo_merge(tx, domain_name=DOMAIN, merge_id=merge_id)

    assert key_rows(services, main_id) == {("_profileId", "@profile"), ("_email", "@profile")}
    assert search(services, "_email", SECRET) == [merged]
    assert fields_of(services, merged) == {"EmailAddress": SECRET, "FirstName": "Ann"}


def test_undo_after_the_type_was_deleted(services, domain):
    merged = ingest(services, {"id": "c5", "email": SECRET, "first": "Ann"}).profile_id
    main_id = new_profile(services, LastName="Lee")
    merge_id = merge(services, main_id, merged)
    delete_crm(services)

    with services.write() as tx:
        result = identity.undo_merge(tx, domain_name=DOMAIN, merge_id=merge_id)

    assert fields_of(services, merged) == {}
    assert fields_of(services, main_id) == {"LastName": "Lee"}
    assert {(d.profile_id, d.path) for d in result.dropped_fields} >= {
        (merged, "EmailAddress"),
        (merged, "FirstName"),
    }
    assert search(services, "_email", SECRET) == []
    assert search(services, "_profileId", merged) == [merged]


# ---------------------------------------------------------------------------- rows and logs


def test_the_merged_away_row_keeps_no_copy_of_its_fields(services, domain):
    merged = new_profile(services, FirstName="Ann", EmailAddress=SECRET)
    main_id = new_profile(services, LastName="Lee")
    merge_id = merge(services, main_id, merged)

    assert opened_row(services, merged)["fields"] == {}

    with services.write() as tx:
        identity.undo_merge(tx, domain_name=DOMAIN, merge_id=merge_id)
    assert fields_of(services, merged) == {"FirstName": "Ann", "EmailAddress": SECRET}


def test_a_profile_merged_away_after_it_was_resolved_is_read_as_its_survivor(services, domain):
    """GetProfile resolves the id, then reads the row: a merge committed in between
    (PostgreSQL's unlocked reads) left it reading the merged-away row, which holds no fields
    now, and answering an empty profile."""
    merged = new_profile(services, FirstName="Ann", EmailAddress=SECRET)
    main_id = new_profile(services, LastName="Lee")
    with services.read() as tx:
        resolved = profiles.resolve_profile_id(tx, domain_name=DOMAIN, profile_id=merged)
    assert resolved == merged

    merge(services, main_id, merged)

    with services.read() as tx:
        read = profiles._read_live(tx, tx.cipher(DOMAIN), DOMAIN, resolved)
    assert read is not None and read.profile_id == main_id
    assert read.fields == fields_of(services, main_id)


def test_a_manual_merge_forgets_the_merged_profiles_match_digests(services, domain):
    with services.write() as tx:
        update_domain(
            tx,
            domain_name=DOMAIN,
            changes={
                "RuleBasedMatching": {
                    "Enabled": True,
                    "MatchingRules": [{"Rule": ["EmailAddress"]}],
                }
            },
        )
        matching.rebuild(tx, domain_name=DOMAIN)
    merged = new_profile(services, EmailAddress="a@example.org")
    main_id = new_profile(services, EmailAddress="b@example.org")

    def digest_owners() -> set[str]:
        with services.read() as tx:
            return set(tx.conn.execute(select(rule_match_digest.c.profile_id)).scalars())

    assert digest_owners() == {merged, main_id}
    merge_id = merge(services, main_id, merged)
    assert digest_owners() == {main_id}

    with services.write() as tx:
        identity.undo_merge(tx, domain_name=DOMAIN, merge_id=merge_id)
    assert digest_owners() == {merged, main_id}


def test_delete_profile_key_scrubs_the_merge_log(services, domain):
    erased = "old-address-erase@example.org"
    merged = new_profile(services, FirstName="Ann")
    main_id = new_profile(services, FirstName="Ann", LastName="Lee")
    with services.write() as tx:
        profiles.add_profile_key(
            tx, domain_name=DOMAIN, profile_id=merged, key_name="_email", values=[erased]
        )
        profiles.add_profile_key(
            tx, domain_name=DOMAIN, profile_id=merged, key_name="loyalty", values=["L-1"]
        )
    merge_id = merge(services, main_id, merged)
    assert erased in sealed_logs(services)

    with services.write() as tx:
        profiles.delete_profile_key(
            tx, domain_name=DOMAIN, profile_id=main_id, key_name="_email", values=[erased]
        )

    assert search(services, "_email", erased) == []
    assert erased not in sealed_logs(services)
    with services.read() as tx:
        shown = identity.get_merge(tx, domain_name=DOMAIN, merge_id=merge_id)
    assert [(k.key_name, k.value) for k in shown.moved_keys if not k.key_name.startswith("_")] == [
        ("loyalty", "L-1")
    ]
    assert erased not in {k.value for k in shown.moved_keys}

    with services.write() as tx:
        result = identity.undo_merge(tx, domain_name=DOMAIN, merge_id=merge_id)
    assert result.missing_keys == ()
    assert erased not in sealed_logs(services)
    with services.read() as tx:
        assert profiles.profile_keys(tx, domain_name=DOMAIN, profile_id=merged)["loyalty"] == [
            "L-1"
        ]
    assert search(services, "_email", erased) == []


def test_delete_profile_key_after_an_undo_scrubs_what_the_undo_listed(services, domain):
    merged = new_profile(services, FirstName="Ann")
    main_id = new_profile(services, LastName="Lee")
    merge_id = merge(services, main_id, merged)
    with services.write() as tx:
        profiles.add_profile_key(
            tx, domain_name=DOMAIN, profile_id=main_id, key_name="loyalty", values=["LATE-1"]
        )
    with services.write() as tx:
        result = identity.undo_merge(tx, domain_name=DOMAIN, merge_id=merge_id)
    assert [(k.key_name, k.value) for k in result.kept_keys] == [("loyalty", "LATE-1")]

    with services.write() as tx:
        profiles.delete_profile_key(
            tx, domain_name=DOMAIN, profile_id=main_id, key_name="loyalty", values=["LATE-1"]
        )

    assert "LATE-1" not in sealed_logs(services)


def test_deleting_a_type_scrubs_the_merge_log(services, domain):
    merged = ingest(services, {"id": "c6", "email": SECRET, "first": "Ann"}).profile_id
    main_id = new_profile(services, LastName="Lee")
    merge_id = merge(services, main_id, merged)
    assert SECRET in sealed_logs(services)

    delete_crm(services)

    assert SECRET not in sealed_logs(services) and '"Ann' not in sealed_logs(services)
    with services.read() as tx:
        shown = identity.get_merge(tx, domain_name=DOMAIN, merge_id=merge_id)
    assert [(k.key_name, k.value) for k in shown.moved_keys] == [("_profileId", merged)]

    with services.write() as tx:
        result = identity.undo_merge(tx, domain_name=DOMAIN, merge_id=merge_id)
    assert {(d.profile_id, d.path, d.object_type_name) for d in result.dropped_fields} == {
        (merged, "EmailAddress", "Crm"),
        (merged, "FirstName", "Crm"),
    }
    assert fields_of(services, merged) == {}
    assert fields_of(services, main_id) == {"LastName": "Lee"}
    assert SECRET not in sealed_logs(services)


def test_deleting_a_type_scrubs_every_log_a_page_at_a_time(services, domain, monkeypatch):
    # Five logs, read two at a time: the pages meet at merge ids, and none is skipped or read
    # twice; no read of the logs asks for more than a page (they hold sealed before-images).
    monkeypatch.setattr(identity, "REWRITE_PAGE", 2)
    for n in range(5):
        merged = ingest(
            services, {"id": f"p{n}", "email": f"page{n}-{SECRET}", "first": f"Ann{n}"}
        ).profile_id
        merge(services, new_profile(services, LastName=f"Lee{n}"), merged)
    assert all(f"page{n}-{SECRET}" in sealed_logs(services) for n in range(5))
    reads: list[str] = []

    def seen(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT") and "FROM merge_log" in statement:
            reads.append(statement)

    engine = services.database.engine
    event.listen(engine, "before_cursor_execute", seen)
    try:
        delete_crm(services)
    finally:
        event.remove(engine, "before_cursor_execute", seen)

    assert SECRET not in sealed_logs(services) and '"Ann' not in sealed_logs(services)
    assert reads and all("LIMIT" in statement.upper() for statement in reads)


# ---------------------------------------------------------------------------- Gender and PartyType


def test_field_sources_gender_and_party_type_take_the_free_text_twins(services, domain):
    main_id = new_profile(
        services, FirstName="M", GenderString="male", PartyTypeString="INDIVIDUAL-ish"
    )
    other = new_profile(services, FirstName="P", GenderString="female", PartyType="BUSINESS")
    merge_id = merge(services, main_id, other, Gender=other, PartyType=other)

    assert fields_of(services, main_id) == {
        "FirstName": "M",
        "GenderString": "female",
        "PartyType": "BUSINESS",
    }

    with services.write() as tx:
        identity.undo_merge(tx, domain_name=DOMAIN, merge_id=merge_id)
    assert fields_of(services, main_id) == {
        "FirstName": "M",
        "GenderString": "male",
        "PartyTypeString": "INDIVIDUAL-ish",
    }


def test_a_main_profile_with_either_twin_keeps_its_own(services, domain):
    main_id = new_profile(services, GenderString="non-binary")
    other = new_profile(services, Gender="FEMALE", PartyTypeString="club")
    merge(services, main_id, other)

    assert fields_of(services, main_id) == {"GenderString": "non-binary", "PartyTypeString": "club"}
