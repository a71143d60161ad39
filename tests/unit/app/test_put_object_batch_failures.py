"""A failure a turn's PutProfileObject batch shares (here: the domain's KMS key cannot be
reached) is every request's answer after one attempt, not one attempt per record more
(objects.coalesce). Through the real ASGI app on SQLite; KMS is moto's, then a port that closes
every connection it accepts, counting them."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.credentials import Credentials
from tests.support.event_loop import run_in_fresh_thread
from tests.unit.app.test_put_object_batches import CONTACTS, DOMAIN, Api, record

from openprofiles.app import create_app
from openprofiles.auth import credentials
from openprofiles.auth.credentials import create_credential
from openprofiles.settings import Settings

pytestmark = pytest.mark.moto

REGION = "us-east-1"


class ClosingPort:
    """A TCP port that accepts connections and closes them at once, counting them."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.accepted = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                self.accepted += 1
            conn.close()

    def take_count(self) -> int:
        with self._lock:
            count, self.accepted = self.accepted, 0
        return count


@pytest.fixture
def unreachable_kms(
    sqlite_settings: Settings, moto_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[tuple[Api, ClosingPort]]:
    """A domain under a KMS key, then an app whose KMS endpoint closes every connection."""
    # The key stays vouched for while the test runs: past auth.credentials' trust window (2 s,
    # which the first request's KMS retries can outlast on a loaded machine) each request would
    # wait for a revocation check on a thread of its own, and reach the handler in a turn of its
    # own, so the turn's batch this test is about would not be one batch (CI, under load).
    monkeypatch.setattr(credentials, "REVOCATION_CHECK_SECONDS", 3600.0)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    key_arn = boto3.client("kms", endpoint_url=moto_url, region_name=REGION).create_key()[
        "KeyMetadata"
    ]["Arn"]
    reachable = dataclasses.replace(
        sqlite_settings, kms_endpoint_url=moto_url, aws_region=REGION, data_key_cache_seconds=0
    )
    app = create_app(reachable)
    with app.state.services.write() as tx:
        issued = create_credential(tx, role="admin")
    key = Credentials(issued.access_key_id, issued.secret_access_key)
    setup = Api(app, key)

    async def create() -> None:
        body: dict[str, Any] = {"DefaultExpirationDays": 30, "DefaultEncryptionKey": key_arn}
        assert (await setup.call("POST", f"/domains/{DOMAIN}", body))[0] == 200
        path = f"/domains/{DOMAIN}/object-types/Contacts"
        assert (await setup.call("PUT", path, CONTACTS))[0] == 200

    run_in_fresh_thread(create())
    app.state.services.database.dispose()
    port = ClosingPort()
    cut_off = create_app(dataclasses.replace(reachable, kms_endpoint_url=port.url))
    try:
        yield Api(cut_off, key), port
    finally:
        cut_off.state.services.database.dispose()
        port.listener.close()


def test_a_failure_every_record_shares_is_not_tried_again_per_record(
    unreachable_kms: tuple[Api, ClosingPort],
) -> None:
    api, port = unreachable_kms
    (alone,) = run_in_fresh_thread(_puts(api, 1))
    one_attempt = port.take_count()
    answers = run_in_fresh_thread(_puts(api, 3))
    assert one_attempt > 0
    assert port.take_count() == one_attempt
    for status, body in [alone, *answers]:
        assert status == 500
        assert body["Message"] == alone[1]["Message"]


async def _puts(api: Api, count: int) -> list[tuple[int, Any]]:
    # One turn: every request reaches the handler before the batch is applied.
    return list(
        await asyncio.gather(*(api.put(record(f"c-{i}", f"+1206555010{i}")) for i in range(count)))
    )
