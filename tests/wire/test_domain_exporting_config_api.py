"""`ExportingConfig.S3Exporting` of a domain's Matching and RuleBasedMatching is kept and echoed
by CreateDomain, GetDomain and UpdateDomain, as README says (nothing is exported to S3).
Through boto3 against a live server, on both backends."""

from __future__ import annotations

import uuid
from typing import Any


def _exporting(bucket: str) -> dict[str, Any]:
    return {"S3Exporting": {"S3BucketName": bucket, "S3KeyName": "matches/"}}


def test_exporting_config_is_kept_and_echoed(live_server: Any) -> None:
    client = live_server.client()
    name = f"d-{uuid.uuid4().hex[:10]}"
    created = client.create_domain(
        DomainName=name,
        DefaultExpirationDays=30,
        Matching={"Enabled": True, "ExportingConfig": _exporting("first-bucket")},
        RuleBasedMatching={"Enabled": True, "ExportingConfig": _exporting("rules-bucket")},
    )
    got = client.get_domain(DomainName=name)
    for answer in (created, got):
        assert answer["Matching"]["ExportingConfig"] == _exporting("first-bucket")
        assert answer["RuleBasedMatching"]["ExportingConfig"] == _exporting("rules-bucket")

    updated = client.update_domain(
        DomainName=name, Matching={"Enabled": True, "ExportingConfig": _exporting("second")}
    )
    assert updated["Matching"]["ExportingConfig"] == _exporting("second")
    assert client.get_domain(DomainName=name)["Matching"]["ExportingConfig"] == _exporting("second")


def test_an_agent_is_not_shown_where_matches_are_exported(live_server: Any) -> None:
    """An administrator's set-up, like the dead-letter queue's URL (auth.policy)."""
    name = f"d-{uuid.uuid4().hex[:10]}"
    live_server.client().create_domain(
        DomainName=name,
        DefaultExpirationDays=30,
        Matching={"Enabled": True, "ExportingConfig": _exporting("first-bucket")},
        RuleBasedMatching={"Enabled": True, "ExportingConfig": _exporting("rules-bucket")},
    )
    seen = live_server.client("agent").get_domain(DomainName=name)
    assert seen["Matching"]["Enabled"] is True and seen["RuleBasedMatching"]["Enabled"] is True
    assert "ExportingConfig" not in seen["Matching"]
    assert "ExportingConfig" not in seen["RuleBasedMatching"]
    admin = live_server.client().get_domain(DomainName=name)
    assert admin["Matching"]["ExportingConfig"] == _exporting("first-bucket")
