"""How a flow reads S3 objects (moto's server mode): an object too large to read whole is
streamed as JSON lines and never held in memory, one that cannot be streamed (a large JSON
array) fails whole with a reason saying what to do, and an object replaced between the listing
and the read is checkpointed under the version that was read."""

from __future__ import annotations

import json
import tracemalloc
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from tests.unit.integrations.integ_helpers import make_domain

from openprofiles.context import Services
from openprofiles.flows import items
from openprofiles.flows.models import FlowRun
from openprofiles.flows.service import run_due_flows, run_flow

from .test_flows_failed_items import EVENT, TYPE, counts, ingested, jsonl, letters, user
from .test_flows_templates import D, flow_definition, put_flow

pytestmark = pytest.mark.moto

MIB = 1024 * 1024


@pytest.fixture
def s3(services: Services, moto_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """An S3 client on moto, the endpoint of the services' flows (with the domain D)."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    services.settings = replace(services.settings, s3_endpoint_url=moto_url)
    make_domain(services, D)
    return boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1")


@pytest.fixture
def bucket(s3: Any, services: Services) -> str:
    name = f"reads-{services.settings.data_dir.parent.name[-20:].lower().replace('_', '-')}"
    s3.create_bucket(Bucket=name)
    return name


def test_an_object_larger_than_a_document_is_streamed(
    services: Services, s3: Any, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(items, "MAX_DOCUMENT_BYTES", 256 * 1024)
    monkeypatch.setattr(items, "CHUNK_BYTES", 64 * 1024)
    # 6 MiB of JSON lines; the filter keeps three records, so the run costs reading, not
    # ingesting. Read whole, the object would cost its bytes, its text and its lines at once.
    padding = "p" * 1000
    rows = [user(n, keep="yes" if n % 2000 == 1 else "no", notes=padding) for n in range(6000)]
    body = jsonl(*rows).encode()
    assert len(body) > 6 * MIB
    del rows
    keep = {
        "TaskType": "Filter",
        "SourceFields": ["keep"],
        "ConnectorOperator": {"S3": "EQUAL_TO"},
        "TaskProperties": {"VALUE": "yes"},
    }
    put_flow(services, "s3", TYPE, flow_definition("s3", bucket, "x/", tasks=[keep]))
    # A first run loads what a first run loads once (boto3's S3 model, the mapping).
    s3.put_object(Bucket=bucket, Key="x/a.jsonl", Body=jsonl(user(9000, keep="yes")).encode())
    assert counts(run_flow(services, domain_name=D, flow_name="s3")) == ("COMPLETED", 1, 1, 1, 0)
    s3.put_object(Bucket=bucket, Key="x/b.jsonl", Body=body)
    del body

    tracemalloc.start()
    try:
        run = run_flow(services, domain_name=D, flow_name="s3", complete=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert counts(run) == ("COMPLETED", 1, 6000, 3, 0) and run.records_filtered == 5997
    assert ingested(services, 1, 2001, 4001) == [1, 2001, 4001]
    assert peak < 4 * MIB, f"the run held {peak / MIB:.1f} MiB"


def test_a_large_object_that_is_not_json_lines_fails_whole(
    services: Services, s3: Any, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(items, "MAX_DOCUMENT_BYTES", 64 * 1024)
    # Small reads, so that the long line below arrives in pieces.
    monkeypatch.setattr(items, "CHUNK_BYTES", 4096)
    bulk = [user(n, notes="n" * 500) for n in range(200)]
    # A JSON array can only be parsed whole: too large for that, it is not read at all.
    s3.put_object(Bucket=bucket, Key="x/a.json", Body=json.dumps(bulk, indent=1).encode())
    # JSON lines are read line by line; a line that is not UTF-8, or longer than the most a
    # flow reads at once, fails alone.
    lines = jsonl(user(1000), *bulk[:150]).encode()
    long_line = jsonl(user(1002, notes="n" * 70_000)).encode()
    lines += b'{"id": 1001, "name": "\xff"}\n' + long_line
    lines += jsonl(user(1003)).encode()
    s3.put_object(Bucket=bucket, Key="x/b.jsonl", Body=lines)
    put_flow(services, "s3", TYPE, flow_definition("s3", bucket, "x/", trigger=EVENT))

    [run] = run_due_flows(services, now=datetime.now(UTC))

    assert counts(run) == ("COMPLETED", 2, 155, 152, 3)
    assert ingested(services, 0, 199, 1000, 1001, 1002, 1003) == [0, 1000, 1003]
    whole, not_utf8, too_long = letters(services)
    assert whole.reason == (
        f"Flow s3, x/a.json: The object s3://{bucket}/x/a.json is larger than 65536 bytes, "
        "the most a "
        "flow reads as one JSON document, and is not JSON lines (a JSON array, or none of its "
        "first 100 lines is a JSON object on its own). Nothing of it was ingested; export it as "
        "JSON lines (one record per line), or in parts of at most 65536 bytes."
    )
    assert whole.object_json == ""
    assert not_utf8.reason == (
        f"Flow s3, x/b.jsonl, line 152: Line 152 of the object s3://{bucket}/x/b.jsonl is not "
        "UTF-8 text: the "
        "byte 0xFF at offset 22 of the line is not valid UTF-8."
    )
    assert not_utf8.object_json == '{"id": 1001, "name": "\\xff"}'
    assert too_long.reason == (
        f"Flow s3, x/b.jsonl, line 153: Line 153 of the object s3://{bucket}/x/b.jsonl is "
        f"{len(long_line) - 1} "
        "bytes long, more than the 65536 bytes a flow reads of one record; it was not read."
    )
    # None of them holds a record a retry could ingest, and each says what to do instead.
    for letter in (whole, not_utf8, too_long):
        assert letter.not_retryable is not None
        assert f"openprofiles flows run s3 --domain {D}" in letter.not_retryable


def test_an_object_replaced_after_the_listing_is_checkpointed_as_read(
    services: Services, s3: Any, bucket: str
) -> None:
    s3.put_object(Bucket=bucket, Key="x/a.jsonl", Body=jsonl(user(1)).encode())
    s3.put_object(Bucket=bucket, Key="x/b.jsonl", Body=jsonl(user(2)).encode())
    put_flow(services, "s3", TYPE, flow_definition("s3", bucket, "x/", trigger=EVENT))

    def replace_b(run: FlowRun) -> None:
        # After the listing and the first object, before the second is read.
        if run.items_read == 1:
            s3.put_object(Bucket=bucket, Key="x/b.jsonl", Body=jsonl(user(3)).encode())

    run = run_flow(services, domain_name=D, flow_name="s3", on_progress=replace_b)

    assert counts(run) == ("COMPLETED", 2, 2, 2, 0)
    assert ingested(services, 1, 2, 3) == [1, 3]
    # The new version was read: the flow has nothing new to read, rather than reading it again
    # (it used to be checkpointed under the ETag of the listing, the version it replaced).
    assert run_due_flows(services, now=datetime.now(UTC)) == []


def test_a_large_object_of_json_lines_whose_first_line_is_broken_is_read_line_by_line(
    services: Services, s3: Any, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Judged by its first line alone, such an export was refused whole, nothing ingested,
    where `openprofiles ingest` loads the same file and dead-letters the broken line. A
    pretty-printed document, with no line that is an object on its own, is still refused."""
    monkeypatch.setattr(items, "MAX_DOCUMENT_BYTES", 64 * 1024)
    monkeypatch.setattr(items, "CHUNK_BYTES", 4096)
    bulk = [user(n, notes="n" * 500) for n in range(150)]
    s3.put_object(
        Bucket=bucket, Key="x/a.jsonl", Body=('{"id": 2000, "name": \n' + jsonl(*bulk)).encode()
    )
    s3.put_object(
        Bucket=bucket, Key="x/b.json", Body=json.dumps({"users": bulk}, indent=1).encode()
    )
    put_flow(services, "s3", TYPE, flow_definition("s3", bucket, "x/", trigger=EVENT))

    [run] = run_due_flows(services, now=datetime.now(UTC))

    assert counts(run) == ("COMPLETED", 2, 152, 150, 2)
    broken, pretty = letters(services)
    assert broken.origin == "Flow s3, x/a.jsonl, line 1"
    assert pretty.origin == "Flow s3, x/b.json" and "is not JSON lines" in pretty.reason


def test_only_an_empty_object_whose_key_ends_with_a_slash_is_no_item(
    services: Services, s3: Any, bucket: str
) -> None:
    """The S3 console's "folders" are empty objects whose keys end with "/": passed over. An
    object with content is read whatever its key: none is passed over without a word."""
    s3.put_object(Bucket=bucket, Key="x/folder/", Body=b"")
    s3.put_object(Bucket=bucket, Key="x/folder/a.jsonl", Body=jsonl(user(1)).encode())
    s3.put_object(Bucket=bucket, Key="x/odd/", Body=jsonl(user(2)).encode())
    put_flow(services, "s3", TYPE, flow_definition("s3", bucket, "x/"))

    run = run_flow(services, domain_name=D, flow_name="s3")
    assert counts(run) == ("COMPLETED", 2, 2, 2, 0)
    assert ingested(services, 1, 2) == [1, 2]
