"""The file loader reads records as strictly as PutProfileObject reads its Object
(openprofiles.json_text): NaN, a lone surrogate or a record nested too deep is a dead-lettered
record with its reason, and the good records around it are ingested (both backends)."""

from __future__ import annotations

import json

from openprofiles.context import Services
from openprofiles.dlq import service as dlq
from openprofiles.ingest.bulk import ingest_records

from .conftest import DOMAIN, crm_type, put_type


def test_records_that_are_not_strict_json_are_dead_lettered_alone(
    services: Services, domain: str
) -> None:
    put_type(services, "Crm", crm_type())
    good = [json.dumps({"id": f"c{i}", "email": f"c{i}@example.com"}) for i in range(3)]
    bad = {
        "NaN": '{"id": "n1", "email": "n1@example.com", "score": NaN}',
        "lone surrogate": '{"id": "s1", "email": "\\ud800@example.com"}',
        "nested too deeply": '{"id": "d1", "deep": ' + "[" * 300 + "]" * 300 + "}",
    }

    summary = ingest_records(
        services,
        domain_name=DOMAIN,
        object_type_name="Crm",
        records=[good[0], *bad.values(), good[1], good[2]],
    )

    assert (summary.read, summary.ingested, summary.dead_lettered) == (6, 3, 3)
    with services.read() as tx:
        letters = dlq.list_messages(tx, domain_name=DOMAIN)
    assert sorted(letter.object_json for letter in letters) == sorted(bad.values())
    reasons = " | ".join(letter.reason for letter in letters)
    assert "NaN is not a JSON value" in reasons
    assert "lone surrogate" in reasons
    assert "nested too deeply" in reasons
