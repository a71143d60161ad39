"""A flow run stopped by SIGTERM (systemd, on every deploy) ends FAILED, saying it was stopped,
and releases its flow at once.

A soak review: stopping `openprofiles flows watch` (or `flows run`) while a run was going left
the run RUNNING, so the flow stayed held, by no one, for STALE_AFTER (15 minutes): a restart
stalled every flow that was mid-run. Each test runs the real command in a process of its own,
against an S3 endpoint the test serves: the run's second object is held back until the
command has been stopped, so the run is stopped mid-run, after its first object was applied.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select
from tests.cli.test_flows_watch_cli import EVENT, Output
from tests.unit.flows.test_flows_failed_items import jsonl, user
from tests.unit.flows.test_flows_templates import flow_definition
from tests.unit.integrations.integ_helpers import make_domain

from openprofiles.app import build_services
from openprofiles.flows.runs import list_runs
from openprofiles.integrations.service import put_integration
from openprofiles.settings import Settings
from openprofiles.store.schema import flow_run

OPENPROFILES = str(Path(sys.executable).parent / "openprofiles")
DOMAIN = "stopped"
BUCKET = "exports"
WAIT_SECONDS = 60.0
# The objects of the bucket: the first is served at once, the second (HELD) first when the test
# lets it.
OBJECTS = {"a.jsonl": jsonl(user(1)).encode(), "b.jsonl": jsonl(user(2)).encode()}
HELD = "b.jsonl"


class Bucket:
    """An S3 endpoint serving OBJECTS (ListObjectsV2, GetObject), whose first GetObject of HELD
    is answered only once `release` is set; `asked` is set when it arrives."""

    def __init__(self) -> None:
        self.asked = threading.Event()
        self.release = threading.Event()
        bucket = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                key = url.path.removeprefix(f"/{BUCKET}").lstrip("/")
                if not key:
                    self._answer(bucket.listing(), "application/xml")
                    return
                if key == HELD and not bucket.asked.is_set():
                    bucket.asked.set()
                    bucket.release.wait(WAIT_SECONDS)
                self._answer(OBJECTS[key], "application/octet-stream", etag=f'"{key}-v1"')

            def _answer(self, body: bytes, kind: str, etag: str | None = None) -> None:
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", kind)
                    self.send_header("Content-Length", str(len(body)))
                    if etag:
                        self.send_header("ETag", etag)
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the command was stopped while it waited

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def listing(self) -> bytes:
        contents = "".join(
            f"<Contents><Key>{key}</Key><ETag>&quot;{key}-v1&quot;</ETag><Size>{len(body)}</Size>"
            "<LastModified>2026-01-01T00:00:00.000Z</LastModified></Contents>"
            for key, body in OBJECTS.items()
        )
        return (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            f"<Name>{BUCKET}</Name><Prefix></Prefix><KeyCount>{len(OBJECTS)}</KeyCount>"
            f"<MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>{contents}"
            "</ListBucketResult>"
        ).encode()


@pytest.fixture
def bucket() -> Iterator[Bucket]:
    served = Bucket()
    thread = threading.Thread(target=served.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served
    finally:
        served.release.set()
        served.server.shutdown()
        served.server.server_close()


@pytest.fixture
def flow(settings: Settings, bucket: Bucket) -> Settings:
    """An Event flow "crm" of DOMAIN reading the bucket."""
    services = build_services(settings)
    try:
        make_domain(services, DOMAIN)
        with services.write() as tx:
            put_integration(
                tx,
                domain_name=DOMAIN,
                uri=None,
                object_type_name="Zendesk-users",
                flow_definition=flow_definition("crm", BUCKET, "", EVENT),
            )
    finally:
        services.database.dispose()
    return settings


def _command(settings: Settings, bucket: Bucket, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENPROFILES_", "AWS_"))}
    env |= {
        "OPENPROFILES_S3_ENDPOINT_URL": bucket.url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    storage = ["--data-dir", str(settings.data_dir)]
    if settings.database_url:
        storage += ["--database-url", settings.database_url]
    return subprocess.Popen(
        [OPENPROFILES, "flows", *args, *storage],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def _stopped_mid_run(process: subprocess.Popen[str], bucket: Bucket) -> str:
    """SIGTERM to the command once its run waits for HELD; what it printed."""
    try:
        assert bucket.asked.wait(WAIT_SECONDS), "the run never asked for the held object"
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=WAIT_SECONDS)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
        bucket.release.set()
    return output


def _the_stopped_run(settings: Settings) -> None:
    """The one run of the flow: FAILED (as stored: not left RUNNING), saying it was stopped,
    with the first object read."""
    services = build_services(settings)
    try:
        with services.read() as tx:
            stored = tx.conn.execute(select(flow_run.c.status)).scalars().all()
            runs = list_runs(tx, domain_name=DOMAIN, flow_name="crm")
    finally:
        services.database.dispose()
    assert stored == ["FAILED"]
    (run,) = runs
    assert run.error is not None and "its process was asked to end" in run.error, run.error
    assert run.items_read == 1
    assert run.finished_at is not None


def test_a_watch_stopped_mid_run_ends_the_run_and_releases_the_flow(
    flow: Settings, bucket: Bucket
) -> None:
    output = _stopped_mid_run(_command(flow, bucket, "watch", "--every", "0.2"), bucket)
    _the_stopped_run(flow)

    # Another watcher runs the flow at once, and reads only the object the stopped run had not.
    again = _command(flow, bucket, "watch", "--every", "0.2")
    try:
        Output(again).wait_for(f"{DOMAIN}/crm (Event): COMPLETED, 1 ingested")
    finally:
        again.send_signal(signal.SIGINT)
        again.wait(timeout=30)
    assert "Traceback" not in output, output


def test_a_run_asked_for_stopped_mid_run_ends_the_run(flow: Settings, bucket: Bucket) -> None:
    _stopped_mid_run(_command(flow, bucket, "run", "crm", "--domain", DOMAIN), bucket)
    _the_stopped_run(flow)

    # Not refused as a run in progress: the flow is free.
    again = _command(flow, bucket, "run", "crm", "--domain", DOMAIN, "--incremental", "--json")
    output, _ = again.communicate(timeout=WAIT_SECONDS)
    assert again.returncode == 0, output
    assert '"Status": "COMPLETED"' in output and '"RecordsIngested": 1' in output, output
