"""What the watcher keeps in memory of a flow between its checks is dropped once the flow is gone
— on SQLite and PostgreSQL.

The watcher keeps, per flow, what a listing left to its thread listed (an Event check waits
EVENT_CHECK_WAIT at most; the flow's next check takes what it listed), the digests of the keys
listed last (flows.item_keys) and the checkpoints read last (flows.check_cache). Each was dropped
only by the flow's next check, which a flow deleted before it never has: kept for as long as the
process lived, one more for every flow deleted. Now a pass drops what it keeps of the flows it no
longer finds, and keeps the rest.

The hung source is a real S3 source whose endpoint does not answer until the test says so."""

from __future__ import annotations

import threading
from collections.abc import Hashable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from tests.unit.integrations.integ_helpers import make_domain

from openprofiles.context import Services
from openprofiles.flows import item_keys
from openprofiles.flows import listing as flow_listing
from openprofiles.flows import service as flows
from openprofiles.flows import triggers as flow_triggers
from openprofiles.integrations.service import delete_integration, find_flow_integration

from .test_flows_event_check_hangs import Endpoint
from .test_flows_failed_items import EVENT, TYPE, jsonl, user
from .test_flows_listing_once import listing_threads
from .test_flows_templates import D, flow_definition, put_flow

# How long a check waits for its listing here: a folder of one file lists well within it.
WAIT = timedelta(seconds=1)


class HungEndpoint(Endpoint):
    """Endpoint (holding every request until `answer` is set) on a port of the system's choice."""

    @staticmethod
    def _bind(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
        return ThreadingHTTPServer(("127.0.0.1", 0), handler)


@pytest.fixture
def endpoint(services: Services, monkeypatch: pytest.MonkeyPatch) -> Iterator[HungEndpoint]:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    served = HungEndpoint()
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


def kept_of(services: Services, kept: dict[Hashable, object]) -> set[str]:
    """The flows of `services` that `kept` (one of the process's caches) holds something of."""
    return {key[2] for key in kept if isinstance(key, tuple) and key[:2] == (id(services), D)}


def delete_flow(services: Services, name: str) -> None:
    with services.write() as tx:
        found = find_flow_integration(tx, domain_name=D, flow_name=name)
        assert found is not None
        delete_integration(tx, domain_name=D, uri=found.uri)


def test_what_is_kept_of_a_deleted_flow_is_dropped_by_the_next_pass(
    services: Services, tmp_path: Path, endpoint: HungEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(flow_triggers, "EVENT_CHECK_WAIT", WAIT)
    before = set(threading.enumerate())
    make_domain(services, D)
    put_flow(services, "hung", TYPE, flow_definition("hung", "hung", trigger=EVENT))
    for name in ("gone", "stays"):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "a.jsonl").write_text(jsonl(user(1)))
        put_flow(services, name, TYPE, flow_definition(name, "file://", str(folder), trigger=EVENT))
    # The folders' flows run; "hung"'s listing is left to its thread.
    assert len(flows.run_due_flows(services, now=datetime.now(UTC))) == 2
    assert flows.run_due_flows(services, now=datetime.now(UTC)) == []
    assert kept_of(services, item_keys._KEPT) == {"gone", "stays"}

    delete_flow(services, "hung")
    delete_flow(services, "gone")
    # The hung listing ends after its flow was deleted: what it listed is kept for a check that
    # never comes.
    endpoint.answer.set()
    for thread in listing_threads(before):
        thread.join()
    assert kept_of(services, flow_listing._LISTED) == {"hung"}

    assert flows.run_due_flows(services, now=datetime.now(UTC)) == []
    assert kept_of(services, flow_listing._LISTED) == set()
    assert kept_of(services, item_keys._KEPT) == {"stays"}
    from openprofiles.flows import check_cache

    assert kept_of(services, check_cache._KEPT) == {"stays"}
    # The last flow gone, its domain has none: dropped too.
    delete_flow(services, "stays")
    assert flows.run_due_flows(services, now=datetime.now(UTC)) == []
    assert kept_of(services, item_keys._KEPT) == set()
    assert kept_of(services, check_cache._KEPT) == set()
