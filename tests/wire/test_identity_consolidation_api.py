"""Consolidation criteria name profile attributes (both backends, boto3 against a live server):
a name that is none (a typo) is refused where it is given, instead of a criterion that can never
hold and so silently never merges."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError


def _matching(criteria: list[list[str]]) -> dict[str, Any]:
    return {
        "Enabled": True,
        "AutoMerging": {
            "Enabled": True,
            "Consolidation": {"MatchingAttributesList": criteria},
        },
    }


def test_unknown_consolidation_attributes_are_refused(live_server):
    client = live_server.client()
    name = f"d-{uuid.uuid4().hex[:10]}"
    with pytest.raises(ClientError) as exc:
        client.create_domain(
            DomainName=name, DefaultExpirationDays=30, Matching=_matching([["Bogus"]])
        )
    error = exc.value.response["Error"]
    assert error["Code"] == "BadRequestException" and "names Bogus" in error["Message"]
    good = [["FirstName", "LastName"], ["Address.City", "Attributes.loyalty"], ["EmailAddress"]]
    client.create_domain(DomainName=name, DefaultExpirationDays=30, Matching=_matching(good))
    for bad in (["Address.Planet"], ["Attributes."], ["Attributes"]):
        with pytest.raises(ClientError) as exc:
            client.update_domain(DomainName=name, Matching=_matching([bad]))
        assert exc.value.response["Error"]["Code"] == "BadRequestException"
        with pytest.raises(ClientError) as exc:
            client.get_auto_merging_preview(
                DomainName=name,
                Consolidation={"MatchingAttributesList": [bad]},
                ConflictResolution={"ConflictResolvingModel": "RECENCY"},
            )
        assert exc.value.response["Error"]["Code"] == "BadRequestException"
