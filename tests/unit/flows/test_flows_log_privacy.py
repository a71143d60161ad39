"""A flow source's errors name what failed — a folder, a file, an S3 object key — and such a name
can be personal data (an export named after a customer's e-mail address). The failed run's error
still names it for the domain's admins, but no log line does: logging_setup withholds the message
of a SourceError, logged itself or as the cause of another error, as it does any message not
known to be free of personal data."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from tests.unit.integrations.integ_helpers import make_domain

from openprofiles import logging_setup
from openprofiles.context import Services
from openprofiles.errors import BadRequest
from openprofiles.flows.service import run_flow
from openprofiles.flows.sources import FolderSource, S3Source, SourceError
from openprofiles.settings import Settings

from .test_flows_templates import D, flow_definition, put_flow

EMAIL = "kim.lee@example.com"
SOURCE_ERROR = "openprofiles.flows.sources.SourceError"


@pytest.fixture
def safe_logging() -> Iterator[None]:
    already = logging_setup.installed()
    logging_setup.install()
    yield
    if not already:
        logging_setup.uninstall()


def log_failure(error: BaseException) -> None:
    """Log `error` as a caller reporting a failure would: as an argument and with its
    traceback."""
    logging.getLogger("openprofiles.flows").error("the flow failed: %s", error, exc_info=error)


@pytest.fixture
def outside(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A file outside the folders flows may read (the test's tmp_path)."""
    path = tmp_path_factory.mktemp("outside") / "records.jsonl"
    path.write_text(json.dumps({"Id": "1", "email": EMAIL}) + "\n")
    return path


def test_a_run_over_a_file_named_after_an_email_logs_no_such_name(
    services: Services,
    tmp_path: Path,
    outside: Path,
    safe_logging: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    make_domain(services, D)
    folder = tmp_path / EMAIL
    folder.mkdir()
    put_flow(services, "x", "Zendesk-users", flow_definition("x", "file://", str(folder)))
    # The file links out of the folders flows may read: a failed item, its dead letter (not
    # logged) naming the file.
    (folder / f"{EMAIL}.jsonl").symlink_to(outside)
    with caplog.at_level(logging.DEBUG):
        run = run_flow(services, domain_name=D, flow_name="x")
        assert (run.status, run.records_dead_lettered) == ("COMPLETED", 1)
        # The folder gone: the source fails, naming it.
        (folder / f"{EMAIL}.jsonl").unlink()
        folder.rmdir()
        run = run_flow(services, domain_name=D, flow_name="x")
        assert run.status == "FAILED" and EMAIL in (run.error or "")
        with pytest.raises(SourceError) as raised:
            FolderSource(services.settings, str(folder)).items()
        assert EMAIL in raised.value.message
        log_failure(raised.value)
    assert f"the flow failed: {SOURCE_ERROR}: {logging_setup.WITHHELD}" in caplog.text
    assert "Traceback (most recent call last)" in caplog.text
    assert EMAIL not in caplog.text


def test_a_refused_folder_is_not_logged_through_the_error_it_caused(
    services: Services, outside: Path, safe_logging: None, caplog: pytest.LogCaptureFixture
) -> None:
    """PutIntegration answers a folder outside the roots with a BadRequest caused by the
    SourceError: a traceback of it prints the cause, without the cause's message."""
    make_domain(services, D)
    folder = outside.parent / EMAIL
    with pytest.raises(BadRequest) as raised:
        put_flow(services, "x", "Zendesk-users", flow_definition("x", "file://", str(folder)))
    assert isinstance(raised.value.__cause__, SourceError)
    with caplog.at_level(logging.ERROR):
        log_failure(raised.value)
    assert "The above exception was the direct cause" in caplog.text
    assert f"{SOURCE_ERROR}: {logging_setup.WITHHELD}" in caplog.text
    assert EMAIL not in caplog.text


@pytest.mark.moto
def test_an_object_key_named_after_an_email_is_not_logged(
    sqlite_settings: Settings, moto_url: str, safe_logging: None, caplog: pytest.LogCaptureFixture
) -> None:
    s3: Any = boto3.client(
        "s3",
        endpoint_url=moto_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    bucket = f"gone-{sqlite_settings.data_dir.parent.name[-20:].lower().replace('_', '-')}"
    s3.create_bucket(Bucket=bucket)
    source = S3Source(sqlite_settings, bucket, "", client=s3)
    # The bucket removed after the listing: the object's read fails the source as a whole.
    s3.delete_bucket(Bucket=bucket)
    with pytest.raises(SourceError) as raised:
        source.open(f"customers/{EMAIL}.jsonl")
    assert EMAIL in raised.value.message
    with caplog.at_level(logging.ERROR):
        log_failure(raised.value)
    assert f"the flow failed: {SOURCE_ERROR}: {logging_setup.WITHHELD}" in caplog.text
    assert EMAIL not in caplog.text
