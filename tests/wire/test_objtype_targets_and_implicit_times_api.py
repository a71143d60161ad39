"""PutProfileObjectType and GetProfileObjectType through a real boto3 client against a live
server (both backends): a Target naming a structure of the Profile shape that a mapping cannot
write (EngagementPreferences) is refused with a message saying so, not that it is no field of
_profile; and an implicit template-named type not used yet has stable CreatedAt and
LastUpdatedAt (the domain's creation), kept once it is used."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError
from tests.unit.object_types.conftest import profile_mapping

from openprofiles.object_types.service import note_implicit_type_used


@pytest.fixture
def domain(live_server: Any) -> str:
    name = f"d-{uuid.uuid4().hex[:10]}"
    live_server.client().create_domain(DomainName=name, DefaultExpirationDays=30)
    return name


def _put_with_target(live_server: Any, domain: str, target: str) -> str:
    definition = profile_mapping()
    definition["Fields"]["extra"] = {"Source": "_source.extra", "Target": target}
    with pytest.raises(ClientError) as exc:
        live_server.client().put_profile_object_type(
            DomainName=domain, ObjectTypeName="People", **definition
        )
    assert exc.value.response["Error"]["Code"] == "BadRequestException"
    return str(exc.value.response["Error"]["Message"])


@pytest.mark.parametrize(
    "target", ["_profile.EngagementPreferences", "_profile.EngagementPreferences.Phone"]
)
def test_engagement_preferences_is_a_structure_no_mapping_targets(
    live_server: Any, domain: str, target: str
) -> None:
    message = _put_with_target(live_server, domain, target)
    assert "not a field" not in message
    assert "_profile.EngagementPreferences is a structure" in message
    assert "_profile.Attributes.<name>" in message


def test_a_read_only_member_part_is_named_read_only(live_server: Any, domain: str) -> None:
    message = _put_with_target(live_server, domain, "_profile.FoundByItems.KeyName")
    assert "not a field" not in message
    assert "read-only" in message


def test_an_unknown_member_is_still_no_field(live_server: Any, domain: str) -> None:
    message = _put_with_target(live_server, domain, "_profile.Nickname")
    assert "'Nickname' is not a field of _profile" in message


def test_unused_implicit_type_times_are_stable(live_server: Any, domain: str) -> None:
    client = live_server.client()
    created = client.get_domain(DomainName=domain)["CreatedAt"]
    first = client.get_profile_object_type(DomainName=domain, ObjectTypeName="Marketo-leads")
    second = client.get_profile_object_type(DomainName=domain, ObjectTypeName="Marketo-leads")
    assert first["CreatedAt"] == second["CreatedAt"] == created
    assert first["LastUpdatedAt"] == second["LastUpdatedAt"] == created
    with live_server.services.write() as tx:
        note_implicit_type_used(tx, domain_name=domain, name="Marketo-leads")
    used = client.get_profile_object_type(DomainName=domain, ObjectTypeName="Marketo-leads")
    assert used["CreatedAt"] == created
    assert used["LastUpdatedAt"] >= created
