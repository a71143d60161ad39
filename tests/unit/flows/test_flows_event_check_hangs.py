"""An Event flow whose source hangs does not hold up the watcher's other flows, from its first
check on — on SQLite and PostgreSQL.

A watcher pass checks every Event flow in turn, listing its source. A listing that hung was
waited for up to LISTING_LIMIT (an hour; an S3 endpoint that never answers, until botocore gave
up) on the first pass: the flows after it waited as long. Later passes found the listing still
going and passed the flow over at once. Now a check waits EVENT_CHECK_WAIT at most: the listing
goes on in its thread, the pass serves the other flows, the flow's next checks pass it over (and
warn once it has gone on for LISTING_LIMIT), and the first check after it ended takes what it
listed instead of listing again.

The source is a real S3 source whose endpoint is a local HTTP server that does not answer until
the test says so (then it answers every ListObjectsV2 with an empty bucket)."""

from __future__ import annotations

import errno
import logging
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from tests.unit.integrations.integ_helpers import make_domain

from openprofiles.context import Services
from openprofiles.flows import listing as flow_listing
from openprofiles.flows import service as flows
from openprofiles.flows import triggers as flow_triggers

from .test_flows_failed_items import EVENT, TYPE, counts, jsonl, user
from .test_flows_listing_hangs import Clock
from .test_flows_listing_once import listing_threads
from .test_flows_listing_stuck_warning import stuck_warnings
from .test_flows_templates import D, flow_definition, put_flow

# How long a check waits here: the hung flow's first check waits this long; the folder's listing
# ends well within it, however loaded the machine.
WAIT = timedelta(seconds=2)
# This test module's ports.
PORTS = range(18200, 18300)
EMPTY_LISTING = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
    b"<Name>hung</Name><Prefix></Prefix><KeyCount>0</KeyCount><MaxKeys>1000</MaxKeys>"
    b"<IsTruncated>false</IsTruncated></ListBucketResult>"
)


class Endpoint:
    """An S3 endpoint that holds every request until `answer` is set; `received` counts them."""

    def __init__(self) -> None:
        self.answer = threading.Event()
        self.received = 0
        self.lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                with endpoint.lock:
                    endpoint.received += 1
                endpoint.answer.wait()
                self.send_response(200)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(EMPTY_LISTING)))
                self.end_headers()
                self.wfile.write(EMPTY_LISTING)

            def log_message(self, *args: object) -> None:
                pass

        self.server = self._bind(Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    @staticmethod
    def _bind(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
        for port in PORTS:
            try:
                return ThreadingHTTPServer(("127.0.0.1", port), handler)
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
        raise RuntimeError(f"no free port in {PORTS}")


@pytest.fixture
def endpoint(services: Services, monkeypatch: pytest.MonkeyPatch) -> Iterator[Endpoint]:
    """The hanging endpoint, the services' S3 endpoint; it answers once the test is done."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    served = Endpoint()
    thread = threading.Thread(target=served.server.serve_forever, daemon=True)
    thread.start()
    services.settings = replace(services.settings, s3_endpoint_url=served.url)
    try:
        yield served
    finally:
        served.answer.set()
        served.server.shutdown()
        served.server.server_close()
        thread.join()


def put_flows(services: Services, tmp_path: Path) -> None:
    """ "hung" (the endpoint's bucket) first, then "fine" (a folder with one new file)."""
    make_domain(services, D)
    put_flow(services, "hung", TYPE, flow_definition("hung", "hung", trigger=EVENT))
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "a.jsonl").write_text(jsonl(user(1)))
    put_flow(services, "fine", TYPE, flow_definition("fine", "file://", str(folder), trigger=EVENT))


def test_the_first_check_of_a_hung_source_does_not_hold_up_the_other_flows(
    services: Services, tmp_path: Path, endpoint: Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(flow_triggers, "EVENT_CHECK_WAIT", WAIT, raising=False)
    before = set(threading.enumerate())
    put_flows(services, tmp_path)

    # The first pass serves "fine" while "hung"'s listing waits for its endpoint.
    [fine] = flows.run_due_flows(services, now=datetime.now(UTC))
    assert (fine.flow_name, counts(fine)) == ("fine", ("COMPLETED", 1, 1, 1, 0))
    assert endpoint.received == 1
    assert len(listing_threads(before)) == 1
    # The next passes the flow over: its source is not listed again while the listing goes on.
    assert flows.run_due_flows(services, now=datetime.now(UTC)) == []
    assert endpoint.received == 1 and len(listing_threads(before)) == 1

    # The endpoint answers (an empty bucket): the next check takes what that listing listed,
    # and the one after lists again.
    endpoint.answer.set()
    for thread in listing_threads(before):
        thread.join()
    assert flows.run_due_flows(services, now=datetime.now(UTC)) == []
    assert endpoint.received == 1
    assert flows.run_due_flows(services, now=datetime.now(UTC)) == []
    assert endpoint.received == 2


def test_a_check_that_left_its_listing_warns_once_it_has_gone_on_too_long(
    services: Services,
    tmp_path: Path,
    endpoint: Endpoint,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(flow_triggers, "EVENT_CHECK_WAIT", WAIT, raising=False)
    monkeypatch.setattr(flow_listing, "_STUCK_WARNED", {}, raising=False)
    caplog.set_level(logging.WARNING, logger=flow_listing.__name__)
    put_flows(services, tmp_path)
    clock = Clock()

    assert len(flows.run_due_flows(services, now=datetime.now(UTC), clock=clock)) == 1
    assert flows.run_due_flows(services, now=datetime.now(UTC), clock=clock) == []
    assert stuck_warnings(caplog) == []
    # The listing has gone on for LISTING_LIMIT: the checks say so, once.
    clock.seconds += flow_listing.LISTING_LIMIT.total_seconds()
    for _ in range(3):
        assert flows.run_due_flows(services, now=datetime.now(UTC), clock=clock) == []
    [warning] = stuck_warnings(caplog)
    assert "Flow hung of domain " + D in warning.getMessage()
    assert endpoint.received == 1
