"""An S3 object whose body breaks off mid-download fails the run as the source's (SourceError),
not as the item's — on SQLite and PostgreSQL, against moto's server mode.

The break is real: the flow's S3 endpoint is a relay in front of moto (tests.support.s3_faults)
that sends the object's status, headers and whole Content-Length, then only part of its body,
and ends the connection cleanly (a short body) or with a reset, or (over HTTPS) sends a TLS
record that does not decrypt. botocore does not retry a body once its GET answered; what is
raised — botocore's IncompleteReadError or ResponseStreamingError, urllib3's SSLError, which
botocore lets through — is the source failing: the run ends FAILED with "Cannot read
s3://…", the item is neither dead-lettered nor checkpointed as failed nor counted towards being
set aside however many runs it breaks, the items after it wait, and the next run once the
network is back reads it. A streamed item keeps what its committed batches applied, and the
next run resumes it after them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import pytest
from sqlalchemy import select
from tests.support.s3_faults import Break, S3FaultRelay, s3_fault_relay
from tests.unit.integrations.integ_helpers import make_domain

from openprofiles.context import Services
from openprofiles.flows import batches as flow_batches
from openprofiles.flows import checkpoints as flow_checkpoints
from openprofiles.flows import items
from openprofiles.store.schema import flow_item

from .test_flows_crashing_items import watch
from .test_flows_failed_items import EVENT, TYPE, counts, ingested, jsonl, letters, user
from .test_flows_templates import D, flow_definition, put_flow

pytestmark = pytest.mark.moto


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the HTTPS relays keep their certificate: one path for the module, so that a flows
    S3 client cached for an endpoint (flows.sources) trusts the relay a later test starts on a
    port an earlier one had."""
    return tmp_path_factory.mktemp("s3-relay-tls")


@pytest.fixture
def relay(
    request: pytest.FixtureRequest,
    moto_url: str,
    tls_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[S3FaultRelay]:
    """The relay the flows reach moto through: HTTP, or HTTPS (`indirect` param "https"), its
    certificate trusted by boto3 as AWS's own would be."""
    tls = tls_dir if getattr(request, "param", "http") == "https" else None
    with s3_fault_relay(moto_url, tls=tls) as relay:
        if relay.ca_bundle is not None:
            monkeypatch.setenv("AWS_CA_BUNDLE", str(relay.ca_bundle))
        yield relay


@pytest.fixture
def s3(
    services: Services, moto_url: str, relay: S3FaultRelay, monkeypatch: pytest.MonkeyPatch
) -> Any:
    """An S3 client on moto itself; the services' flows reach moto through the relay."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    services.settings = replace(services.settings, s3_endpoint_url=relay.url)
    make_domain(services, D)
    return boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1")


@pytest.fixture
def bucket(s3: Any, services: Services) -> str:
    name = f"broken-{services.settings.data_dir.parent.name[-20:].lower().replace('_', '-')}"
    s3.create_bucket(Bucket=name)
    put_flow(services, "crm", TYPE, flow_definition("crm", name, "", trigger=EVENT))
    return name


def checkpoints(services: Services) -> list[str]:
    """The versions the flow's items are checkpointed under."""
    with services.read() as tx:
        return list(
            tx.conn.execute(select(flow_item.c.version).where(flow_item.c.domain_name == D))
            .scalars()
            .all()
        )


def etag(s3: Any, bucket: str, key: str) -> str:
    return str(s3.head_object(Bucket=bucket, Key=key)["ETag"]).strip('"')


# What botocore (its IncompleteReadError, its ResponseStreamingError) or urllib3 (its SSLError,
# which botocore lets through) says of each break; the run's error quotes it.
SAID = {
    "short": "read, but total bytes expected is",
    "reset": "Connection reset by peer",
    "garbled": "bad record mac",
}
# Each break, over the connection it happens on.
BREAKS = pytest.mark.parametrize(
    ("relay", "how"),
    [("http", "short"), ("http", "reset"), ("https", "garbled")],
    indirect=["relay"],
    ids=["short", "reset", "garbled"],
)


@BREAKS
def test_an_object_broken_off_fails_the_run_as_the_source(
    services: Services, s3: Any, bucket: str, relay: S3FaultRelay, how: Break
) -> None:
    body = jsonl(user(1), user(2)).encode()
    s3.put_object(Bucket=bucket, Key="a.jsonl", Body=body)
    s3.put_object(Bucket=bucket, Key="b.jsonl", Body=jsonl(user(3)).encode())
    # Broken off within the second record, every time for more runs than set an item aside.
    attempts = flow_checkpoints.CRASH_ATTEMPTS + 1
    relay.cut(bucket, "a.jsonl", after=len(jsonl(user(1))) + 10, how=how, times=attempts)

    for _ in range(attempts):
        [run] = watch(services)
        # Read whole before any record is handed out (a small item): nothing of it applied,
        # and the item after it not read.
        assert counts(run) == ("FAILED", 0, 0, 0, 0)
        assert run.error is not None
        assert run.error.startswith(f"Cannot read s3://{bucket}/a.jsonl: ")
        assert SAID[how] in run.error
        # Neither dead-lettered, nor checkpointed (as failed, or as a crash counted).
        assert letters(services) == []
        assert checkpoints(services) == []
    # One GET a run: neither botocore nor the run fetched the body again.
    assert relay.gets[f"{bucket}/a.jsonl"] == attempts
    assert relay.gets[f"{bucket}/b.jsonl"] == 0
    assert ingested(services, 1, 2, 3) == []

    # The network back, the next run reads both items whole; then nothing is pending.
    [run] = watch(services)
    assert counts(run) == ("COMPLETED", 2, 3, 3, 0)
    assert ingested(services, 1, 2, 3) == [1, 2, 3]
    assert letters(services) == []
    assert sorted(checkpoints(services)) == sorted(
        [etag(s3, bucket, "a.jsonl"), etag(s3, bucket, "b.jsonl")]
    )
    assert watch(services) == []


@BREAKS
def test_a_streamed_object_broken_off_keeps_its_committed_batches_and_is_resumed(
    services: Services,
    s3: Any,
    bucket: str,
    relay: S3FaultRelay,
    monkeypatch: pytest.MonkeyPatch,
    how: Break,
) -> None:
    # Batches of two records, and the object read as JSON lines from its first few hundred
    # bytes on, so that batches are committed before the break. Read 64 bytes at a time: a
    # read the reset interrupts loses what it had gathered (a whole CHUNK_BYTES, read again
    # next run), and small reads keep that within the sixth record, as the short body does.
    monkeypatch.setattr(flow_batches, "BATCH_SIZE", 2)
    monkeypatch.setattr(items, "MAX_DOCUMENT_BYTES", 400)
    monkeypatch.setattr(items, "CHUNK_BYTES", 64)
    records = [user(n) for n in range(1, 8)]
    s3.put_object(Bucket=bucket, Key="a.jsonl", Body=jsonl(*records).encode())
    version = etag(s3, bucket, "a.jsonl")
    # Broken off within the sixth record: records 1-4 are two committed batches, the fifth is
    # read and not applied (its batch is not full when the body ends).
    relay.cut(bucket, "a.jsonl", after=len(jsonl(*records[:5]).encode()) + 10, how=how)

    [first] = watch(services)
    assert counts(first) == ("FAILED", 0, 4, 4, 0)
    assert first.error is not None
    assert first.error.startswith(f"Cannot read s3://{bucket}/a.jsonl: ")
    assert SAID[how] in first.error
    assert ingested(services, *range(1, 8)) == [1, 2, 3, 4]
    assert letters(services) == []
    # Begun, four records applied: pending, to be resumed after them.
    assert checkpoints(services) == [f"partial:4:{version}"]

    [second] = watch(services)
    assert counts(second) == ("COMPLETED", 1, 3, 3, 0)
    assert ingested(services, *range(1, 8)) == list(range(1, 8))
    assert first.records_read + second.records_read == len(records)
    assert letters(services) == []
    assert checkpoints(services) == [version]
    assert relay.gets[f"{bucket}/a.jsonl"] == 2
    assert watch(services) == []
