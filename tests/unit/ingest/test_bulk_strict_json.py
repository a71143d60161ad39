"""The file loader reads records as strictly as PutProfileObject reads its Object
(openprofiles.json_text): NaN, a lone surrogate or a record nested too deep is a dead-lettered
record with its reason, and the good records around it are ingested (both backends)."""

from __future__ import annotations

import codecs
import json
from pathlib import Path

import pytest

from openprofiles.context import Services
from openprofiles.dlq import service as dlq
from openprofiles.ingest.bulk import ingest_records, read_records

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


def test_files_that_are_not_utf8_or_nest_too_deep_are_told_apart_from_records(
    tmp_path: Path,
) -> None:
    """An audit: a Latin-1 line crashed 'openprofiles ingest' half-way (UnicodeDecodeError
    after earlier batches were committed), a deeply nested array raised RecursionError, and an
    array file with a byte order mark was read as JSON lines."""
    lines = tmp_path / "latin1.jsonl"
    lines.write_bytes(b'{"id": "1"}\n{"id": "caf\xe9"}\n{"id": "3"}\n')
    total, records = read_records(lines)
    texts = [record.text for record in records]
    assert total == 3 and texts[0] == '{"id": "1"}' and texts[2] == '{"id": "3"}'
    assert "\\xe9" in texts[1]  # kept, as a record that is not JSON: dead-lettered, not a crash

    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match="not JSON"):
        read_records(deep)

    latin_array = tmp_path / "latin1.json"
    latin_array.write_bytes(b'[{"id": "caf\xe9"}]')
    with pytest.raises(ValueError, match="not UTF-8 text"):
        read_records(latin_array)

    bom = tmp_path / "bom.json"
    bom.write_bytes(codecs.BOM_UTF8 + json.dumps([{"id": "1"}, {"id": "2"}]).encode())
    total, records = read_records(bom)
    assert total == 2 and [json.loads(r.text) for r in records] == [{"id": "1"}, {"id": "2"}]
