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
