"""A merged-away profile id through boto3 against a live server (both backends). MergeProfiles
deletes the merged profiles, as on AWS (spec §5.3): every operation naming one by its id answers
ResourceNotFoundException naming the survivor, BatchGetProfile an Errors entry for that id, and
none acts on the survivor in its place. Its key values still find the survivor (spec §1.6)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError
from tests.wire.test_identity_api import CRM


@pytest.fixture
def merged(live_server: Any) -> tuple[str, str, str, str]:
    """(domain, main profile, merged-away profile, unique key of the object it brought)."""
    client = live_server.client()
    domain = f"mrg-{uuid.uuid4().hex[:10]}"
    client.create_domain(DomainName=domain, DefaultExpirationDays=30)
    client.put_profile_object_type(DomainName=domain, ObjectTypeName="Crm", **CRM)
    main = client.create_profile(DomainName=domain, FirstName="Main")["ProfileId"]
    key = client.put_profile_object(
        DomainName=domain,
        ObjectTypeName="Crm",
        Object=json.dumps({"id": "c1", "email": "dup@example.com"}),
    )["ProfileObjectUniqueKey"]
    [dup] = [
        p["ProfileId"]
        for p in client.search_profiles(
            DomainName=domain, KeyName="_email", Values=["dup@example.com"]
        )["Items"]
    ]
    client.merge_profiles(DomainName=domain, MainProfileId=main, ProfileIdsToBeMerged=[dup])
    return domain, main, dup, key


def _not_found(call: Any, survivor: str, **params: Any) -> None:
    with pytest.raises(ClientError) as exc:
        call(**params)
    error = exc.value.response["Error"]
    assert error["Code"] == "ResourceNotFoundException"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert f"it was merged into {survivor}" in error["Message"]


def _main_profile(client: Any, domain: str, main: str) -> dict[str, Any]:
    [found] = client.batch_get_profile(DomainName=domain, ProfileIds=[main])["Profiles"]
    return dict(found)


def test_update_profile_of_a_merged_away_id_is_not_found_and_changes_nothing(
    live_server: Any, merged: tuple[str, str, str, str]
) -> None:
    client = live_server.client()
    domain, main, dup, _ = merged
    _not_found(client.update_profile, main, DomainName=domain, ProfileId=dup, LastName="Written")
    assert "LastName" not in _main_profile(client, domain, main)


def test_batch_get_profile_answers_each_requested_id_under_that_id(
    live_server: Any, merged: tuple[str, str, str, str]
) -> None:
    client = live_server.client()
    domain, main, dup, _ = merged
    missing = uuid.uuid4().hex
    got = client.batch_get_profile(DomainName=domain, ProfileIds=[dup, main, missing])
    assert [p["ProfileId"] for p in got["Profiles"]] == [main]
    errors = {e["ProfileId"]: e for e in got["Errors"]}
    assert set(errors) == {dup, missing}
    assert {e["Code"] for e in errors.values()} == {"ResourceNotFoundException"}
    assert f"it was merged into {main}" in errors[dup]["Message"]


def test_every_operation_naming_a_merged_away_id_answers_not_found(
    live_server: Any, merged: tuple[str, str, str, str]
) -> None:
    client = live_server.client()
    domain, main, dup, key = merged
    other = client.create_profile(DomainName=domain, FirstName="Other")["ProfileId"]
    by_id = {"DomainName": domain, "ProfileId": dup}
    _not_found(client.delete_profile, main, **by_id)
    _not_found(client.add_profile_key, main, KeyName="loyaltyId", Values=["L-1"], **by_id)
    _not_found(client.delete_profile_key, main, KeyName="crmId", Values=["c1"], **by_id)
    _not_found(client.list_profile_objects, main, ObjectTypeName="Crm", **by_id)
    _not_found(
        client.delete_profile_object,
        main,
        ObjectTypeName="Crm",
        ProfileObjectUniqueKey=key,
        **by_id,
    )
    _not_found(
        client.merge_profiles,
        main,
        DomainName=domain,
        MainProfileId=other,
        ProfileIdsToBeMerged=[dup],
    )
    _not_found(
        client.merge_profiles,
        main,
        DomainName=domain,
        MainProfileId=dup,
        ProfileIdsToBeMerged=[other],
    )
    # None of them touched the survivor: its object, its keys and the other profile are as
    # they were.
    listed = client.list_profile_objects(DomainName=domain, ObjectTypeName="Crm", ProfileId=main)
    assert [i["ProfileObjectUniqueKey"] for i in listed["Items"]] == [key]
    for key_name, value in (("crmId", "c1"), ("_profileId", dup)):
        found = client.search_profiles(DomainName=domain, KeyName=key_name, Values=[value])
        assert [p["ProfileId"] for p in found["Items"]] == [main]
    assert (
        client.search_profiles(DomainName=domain, KeyName="loyaltyId", Values=["L-1"])["Items"]
        == []
    )
    assert _main_profile(client, domain, other)["FirstName"] == "Other"
