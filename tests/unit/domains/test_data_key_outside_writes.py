"""A domain's data key is unwrapped with no write transaction open (domains.service.
domain_cipher, store.conflicts.RestartOutside): while KMS takes its time over one domain's key,
the SQLite writer lock stays free and other writes go on.

Against a live server with boto3 and moto's KMS, reached through a proxy that holds each
connection until the test opens it, so "a KMS call is in flight" is a state the test controls.
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from tests.support.server import run_server

from openprofiles.context import Services
from openprofiles.domains.service import create_domain
from openprofiles.domains.setup import new_domain_key
from openprofiles.profiles import service as profiles
from openprofiles.settings import Settings
from openprofiles.store.conflicts import RestartOutside, prepared, restartable, retrying

pytestmark = pytest.mark.moto

REGION = "us-east-1"
# Bounds on waits that end at once when the code is right; only a wrong answer waits them out.
WAIT_SECONDS = 20


class GatedProxy:
    """A TCP proxy to `target` that holds every connection until `gate` is set."""

    def __init__(self, target: str) -> None:
        parts = urlsplit(target)
        self.target = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.arrived = threading.Event()
        self.gate = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            self.arrived.set()
            threading.Thread(target=self._forward_when_open, args=(client,), daemon=True).start()

    def _forward_when_open(self, client: socket.socket) -> None:
        self.gate.wait()
        upstream = socket.create_connection(self.target)
        for source, sink in ((client, upstream), (upstream, client)):
            threading.Thread(target=_pipe, args=(source, sink), daemon=True).start()

    def close(self) -> None:
        self.gate.set()
        self.listener.close()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    # A closed or reset socket ends the pipe; so does the other side's end.
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    for sock in (source, sink):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def kms_settings(
    sqlite_settings: Settings, moto_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Settings:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    return dataclasses.replace(sqlite_settings, kms_endpoint_url=moto_url, aws_region=REGION)


@pytest.fixture
def gated_server(kms_settings: Settings, moto_url: str) -> Iterator[tuple[Any, GatedProxy]]:
    """Domain `sealed` under a KMS key and `local` under the local key; then a server (a new
    process's key cache: cold) whose KMS is behind a gated proxy."""
    key_arn = boto3.client("kms", endpoint_url=moto_url, region_name=REGION).create_key()[
        "KeyMetadata"
    ]["Arn"]
    with run_server(kms_settings) as setup:
        client = setup.client()
        client.create_domain(
            DomainName="sealed", DefaultExpirationDays=30, DefaultEncryptionKey=key_arn
        )
        client.create_domain(DomainName="local", DefaultExpirationDays=30)
    proxy = GatedProxy(moto_url)
    try:
        with run_server(dataclasses.replace(kms_settings, kms_endpoint_url=proxy.url)) as server:
            yield server, proxy
    finally:
        proxy.close()


def _in_thread(call: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = call()
        except Exception as exc:  # reported by the assertions below
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def test_writes_go_on_while_a_cold_data_key_is_being_unwrapped(
    gated_server: tuple[Any, GatedProxy],
) -> None:
    server, proxy = gated_server
    sealed_client, local_client = server.client(), server.client()

    slow, slow_outcome = _in_thread(
        lambda: sealed_client.create_profile(DomainName="sealed", FirstName="Ada")
    )
    assert proxy.arrived.wait(WAIT_SECONDS), "the server never called KMS"
    # KMS is answering nobody now. A write to another domain must not wait for it.
    other, other_outcome = _in_thread(
        lambda: local_client.create_profile(DomainName="local", FirstName="Bob")
    )
    other.join(WAIT_SECONDS)
    finished_while_held = not other.is_alive()
    proxy.gate.set()
    other.join(WAIT_SECONDS)
    slow.join(WAIT_SECONDS)

    assert finished_while_held, "a write waited for another domain's KMS call"
    assert "error" not in other_outcome, other_outcome
    assert "error" not in slow_outcome, slow_outcome
    # The held request was run again after the unwrap and wrote its profile once.
    found = sealed_client.search_profiles(
        DomainName="sealed", KeyName="_profileId", Values=[slow_outcome["result"]["ProfileId"]]
    )["Items"]
    assert [item["FirstName"] for item in found] == ["Ada"]


def test_a_restart_prepares_once_and_counts_no_attempt() -> None:
    runs: list[Any] = []
    prepares: list[str] = []

    def attempt() -> Any:
        runs.append(prepared("key"))
        if prepared("key") is None:
            assert restartable()

            def prepare() -> str:
                prepares.append("once")
                return "unwrapped"

            raise RestartOutside("test", "key", prepare)
        return prepared("key")

    assert retrying(attempt) == "unwrapped"
    assert runs == [None, "unwrapped"]
    assert prepares == ["once"]
    # Nothing outlives the call: the next run prepares again.
    assert prepared("key") is None
    assert not restartable()


def test_no_restart_once_the_run_may_not_run_again() -> None:
    assert retrying(restartable, may_retry=lambda: False) is False


def test_an_action_after_the_commit_never_runs_the_committed_request_again(
    services: Services,
) -> None:
    """A cold data key in an after-commit action's write (the SQS outbox settling its sends,
    when the key expired during the send) was a RestartOutside that `retrying` took for the
    request's: the committed request ran twice (two dead letters, two sends)."""
    domain = "after-commit"
    key_id, wrapped = new_domain_key(services, domain, None)
    with services.write() as tx:
        create_domain(
            tx,
            domain_name=domain,
            config={"DefaultExpirationDays": 30},
            key_id=key_id,
            wrapped_key=wrapped,
        )
    runs: list[str] = []

    def settle() -> None:
        services.keys.forget(domain)  # the cache expired meanwhile
        with services.write() as tx:
            tx.cipher(domain)

    def request() -> None:
        runs.append("run")
        with services.write() as tx:
            profiles.create_profile(tx, domain_name=domain, fields={"FirstName": "Ada"})
            tx.after_commit(settle)

    retrying(request)
    assert runs == ["run"]
    with services.read() as tx:
        found, _ = profiles.search_profiles(
            tx, domain_name=domain, criteria=[profiles.SearchCriterion("_fullName", ("Ada",))]
        )
    assert len(found) == 1
