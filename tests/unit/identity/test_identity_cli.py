"""`openprofiles merges list|show|undo` against a real database (both backends)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from click.testing import CliRunner
from tests.support.lost_races import attempts, deadlock_once_on

from openprofiles.cli import main
from openprofiles.identity import service
from openprofiles.profiles import service as profiles

from .conftest import fields_of, ingest, new_profile


def run(settings: Any, *args: str) -> Any:
    storage = ["--data-dir", str(settings.data_dir)]
    if settings.database_url:
        storage += ["--database-url", settings.database_url]
    return CliRunner().invoke(main, ["merges", args[0], *storage, *args[1:]])


def test_list_show_and_undo(settings, services, domain):
    first = ingest(services, {"id": "c1", "email": "ada@example.com", "first": "Ada"})
    second = ingest(services, {"id": "c2", "email": "ada@work.example"})
    main_id, other = first.profile_id, second.profile_id
    with services.write() as tx:
        merge_id = service.merge_profiles(
            tx, domain_name="ident", main_profile_id=main_id, profile_ids=[other]
        ).merge_id
    later = ingest(services, {"id": "c3", "email": "ada@work.example"})

    listed = run(settings, "list", "--domain", "ident", "--json")
    assert listed.exit_code == 0, listed.output
    assert [m["MergeId"] for m in json.loads(listed.output)] == [merge_id]
    text = run(settings, "list", "--domain", "ident")
    assert f"{main_id} <- {other}" in text.output

    shown = run(settings, "show", "--domain", "ident", "--json", merge_id)
    assert shown.exit_code == 0, shown.output
    detail = json.loads(shown.output)
    assert {"From": other, "KeyName": "crmId", "Value": "c2"} in detail["MovedKeys"]
    assert detail["MovedObjects"][0]["ProfileObjectUniqueKey"] == second.profile_object_unique_key

    undone = run(settings, "undo", "--domain", "ident", merge_id)
    assert undone.exit_code == 0, undone.output
    assert f"Restored {other}" in undone.output
    assert f"object Crm/{later.profile_object_unique_key}" in undone.output
    assert fields_of(services, other) == {"EmailAddress": "ada@work.example"}

    again = run(settings, "undo", "--domain", "ident", merge_id)
    assert again.exit_code != 0
    assert "already undone" in again.output
    shown = json.loads(run(settings, "show", "--domain", "ident", "--json", merge_id).output)
    assert shown["Undo"]["KeptObjects"] == [
        {"ObjectTypeName": "Crm", "ProfileObjectUniqueKey": later.profile_object_unique_key}
    ]


def test_undo_lists_the_fields_it_put_back(settings, services, domain):
    main_id = new_profile(services, FirstName="Jane")
    other = new_profile(services, LastName="Doe", MiddleName="Q")
    with services.write() as tx:
        merge_id = service.merge_profiles(
            tx, domain_name="ident", main_profile_id=main_id, profile_ids=[other]
        ).merge_id
        profiles.update_profile(
            tx, domain_name="ident", profile_id=main_id, changes={"MiddleName": "R"}
        )

    undone = run(settings, "undo", "--domain", "ident", merge_id)

    assert undone.exit_code == 0, undone.output
    assert f"written after the merge, kept on {main_id}: field MiddleName" in undone.output
    assert f"put back as before the merge on {main_id}: field LastName" in undone.output
    assert f"note: {main_id} was written after the merge" in undone.output
    shown = json.loads(run(settings, "show", "--domain", "ident", "--json", merge_id).output)
    assert shown["Undo"]["KeptFields"] == ["MiddleName"]
    assert shown["Undo"]["RevertedFields"] == ["LastName"]
    assert shown["Undo"]["MainWrittenSinceMerge"] is True


def test_undo_lists_what_was_deleted_since(settings, services, domain):
    from openprofiles.object_types.service import delete_object_type

    main_id = new_profile(services, LastName="Main")
    other = ingest(services, {"id": "c5", "first": "FromCrm"}).profile_id
    with services.write() as tx:
        profiles.add_profile_key(
            tx, domain_name="ident", profile_id=other, key_name="loyalty", values=["L-5"]
        )
        merge_id = service.merge_profiles(
            tx, domain_name="ident", main_profile_id=main_id, profile_ids=[other]
        ).merge_id
        profiles.delete_profile_key(
            tx, domain_name="ident", profile_id=main_id, key_name="loyalty", values=["L-5"]
        )
        delete_object_type(tx, domain_name="ident", name="Crm")

    undone = run(settings, "undo", "--domain", "ident", merge_id)

    assert undone.exit_code == 0, undone.output
    # The erased values left the merge log with their deletion: neither listed nor shown.
    # As words: a profile or object id in the output is hex, and may hold "c5" by chance.
    assert not re.search(r"\bL-5\b|\bc5\b", undone.output)
    assert f"field FirstName of {other} not put back" in undone.output
    shown = json.loads(run(settings, "show", "--domain", "ident", "--json", merge_id).output)
    assert shown["Undo"]["MissingKeys"] == []
    assert shown["MovedKeys"] == [
        {"From": other, "KeyName": "_profileId", "Value": other},
    ]
    assert shown["Undo"]["DroppedFields"] == [
        {"ProfileId": other, "Field": "FirstName", "ObjectTypeName": "Crm"}
    ]


def test_unknown_merge_and_domain(settings, services, domain):
    new_profile(services, FirstName="Jane")
    missing = run(settings, "undo", "--domain", "ident", "0" * 32)
    assert missing.exit_code != 0 and "does not exist" in missing.output
    nodomain = run(settings, "list", "--domain", "nowhere")
    assert nodomain.exit_code != 0


@pytest.mark.parametrize("settings", ["postgres"], indirect=True)
def test_an_undo_that_lost_a_race_runs_again(settings, services, domain):
    main_id = new_profile(services, FirstName="Ada")
    other = new_profile(services, FirstName="Bob")
    with services.write() as tx:
        merge_id = service.merge_profiles(
            tx, domain_name="ident", main_profile_id=main_id, profile_ids=[other]
        ).merge_id
    deadlock_once_on(services, "merge_log")

    undone = run(settings, "undo", "--domain", "ident", merge_id)
    assert undone.exit_code == 0, undone.output
    assert f"Restored {other}" in undone.output
    assert attempts(services) == 2
    with services.read() as tx:
        assert profiles.resolve_profile_id(tx, domain_name="ident", profile_id=other) == other


def test_show_tells_which_profile_each_merged_field_came_from(settings, services, domain):
    """A plain MergeProfiles fills the main profile's empty fields from the merged ones:
    `merges show` named only FieldSourceProfileIds, so for such a merge it told nothing of
    where BusinessName, an address line or an attribute came from."""
    main_id = new_profile(services, FirstName="Ada")
    first = new_profile(
        services, FirstName="Augusta", BusinessName="Acme", Attributes={"tier": "gold"}
    )
    second = new_profile(
        services, LastName="Lovelace", BusinessName="Other", Address={"PostalCode": "W1"}
    )
    with services.write() as tx:
        merge_id = service.merge_profiles(
            tx, domain_name="ident", main_profile_id=main_id, profile_ids=[first, second]
        ).merge_id

    shown = run(settings, "show", "--domain", "ident", "--json", merge_id)
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["FieldsTakenFrom"] == {
        "Address": second,
        "Attributes.tier": first,
        "BusinessName": first,
        "LastName": second,
    }
    text = run(settings, "show", "--domain", "ident", merge_id).output
    assert f"field BusinessName taken from {first}\n" in text
    assert "FirstName" not in text  # the main profile's own, kept


def test_show_marks_the_fields_field_source_profile_ids_named(settings, services, domain):
    main_id = new_profile(services, FirstName="Bea", LastName="Kay")
    other = new_profile(services, FirstName="Beatrice", LastName="Kay")
    with services.write() as tx:
        merge_id = service.merge_profiles(
            tx,
            domain_name="ident",
            main_profile_id=main_id,
            profile_ids=[other],
            field_sources={"FirstName": other, "LastName": other},
        ).merge_id
    detail = json.loads(run(settings, "show", "--domain", "ident", "--json", merge_id).output)
    # LastName is the same on both, and was asked of the merged profile: it is named too.
    assert detail["FieldsTakenFrom"] == {"FirstName": other, "LastName": other}
    text = run(settings, "show", "--domain", "ident", merge_id).output
    assert f"field FirstName taken from {other} (FieldSourceProfileIds)" in text


def test_show_names_the_asked_profile_for_a_whole_field(settings, services, domain):
    """FieldSourceProfileIds named a whole Address: its lines are told as that profile's, not
    as the first merged profile's that happened to hold the same city."""
    main_id = new_profile(services, FirstName="Ada", Address={"City": "Lyon"}, Gender="FEMALE")
    first = new_profile(services, LastName="B", Address={"City": "Paris", "Country": "FR"})
    second = new_profile(services, LastName="C", Address={"City": "Paris"}, Gender="MALE")
    with services.write() as tx:
        merge_id = service.merge_profiles(
            tx,
            domain_name="ident",
            main_profile_id=main_id,
            profile_ids=[first, second],
            field_sources={"Address": second, "Gender": main_id, "LastName": second},
        ).merge_id
    detail = json.loads(run(settings, "show", "--domain", "ident", "--json", merge_id).output)
    assert detail["FieldsTakenFrom"] == {"Address": second, "LastName": second}
