"""An item deleted between the listing and its reading is no item of the run — on SQLite and
PostgreSQL. It used to be dead-lettered and checkpointed as failed under the version listed:
an S3 object replaced by a delete and a put of the same content (the same ETag) was never read
again by an automatic run."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.unit.integrations.integ_helpers import make_domain

from openprofiles.context import Services
from openprofiles.flows.models import FlowRun
from openprofiles.flows.service import run_due_flows, run_flow
from openprofiles.flows.sources import S3Source

from .hooked_source import Hooked
from .test_flows_failed_items import EVENT, TYPE, counts, ingested, jsonl, letters, user
from .test_flows_templates import D, flow_definition, put_flow


@pytest.mark.moto
def test_an_object_deleted_since_listed_is_read_once_it_is_back(
    services: Services, moto_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    services.settings = replace(services.settings, s3_endpoint_url=moto_url)
    make_domain(services, D)
    s3 = boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1")
    bucket = f"gone-{services.settings.data_dir.parent.name[-20:].lower().replace('_', '-')}"
    s3.create_bucket(Bucket=bucket)
    body = jsonl(user(1), user(2)).encode()
    s3.put_object(Bucket=bucket, Key="x/a.jsonl", Body=body)
    s3.put_object(Bucket=bucket, Key="x/b.jsonl", Body=jsonl(user(3)).encode())
    put_flow(services, "s3", TYPE, flow_definition("s3", bucket, "x/", trigger=EVENT))
    # The uploader replaces the object by a delete and a put: the run's GetObject falls between.
    gone = {"x/a.jsonl": lambda: s3.delete_object(Bucket=bucket, Key="x/a.jsonl")}
    source = Hooked(S3Source(services.settings, bucket, "x/"), gone)

    run = run_flow(services, domain_name=D, flow_name="s3", trigger="Event", source=source)

    assert counts(run) == ("COMPLETED", 1, 1, 1, 0)
    assert letters(services) == []
    s3.put_object(Bucket=bucket, Key="x/a.jsonl", Body=body)
    [later] = run_due_flows(services, now=datetime.now(UTC))
    assert counts(later) == ("COMPLETED", 1, 2, 2, 0)
    assert ingested(services, 1, 2, 3) == [1, 2, 3]


def test_a_file_deleted_since_listed_is_no_item(services: Services, tmp_path: Path) -> None:
    make_domain(services, D)
    folder = tmp_path / "export"
    folder.mkdir()
    for n in (1, 2, 3):
        (folder / f"{n}.jsonl").write_text(jsonl(user(n)))
    put_flow(services, "crm", TYPE, flow_definition("crm", "file://", str(folder), trigger=EVENT))

    def remove_second(run: FlowRun) -> None:
        if run.items_read == 1:
            (folder / "2.jsonl").unlink()

    run = run_flow(services, domain_name=D, flow_name="crm", on_progress=remove_second)

    assert counts(run) == ("COMPLETED", 2, 2, 2, 0)
    assert letters(services) == []
    assert ingested(services, 1, 2, 3) == [1, 3]
