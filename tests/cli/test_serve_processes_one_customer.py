"""Concurrent writes for one new customer through two `openprofiles serve` processes on one
database never create two profiles (DESIGN "Scale", spec §1.6), on SQLite (the processes queue
on the writer lock) and on PostgreSQL (on the database's locks). Real boto3 clients (and signed
posts for the contact feed), half of them on each process, released together; several rounds,
each for a customer none of the processes has seen.

Covered here because tests/unit/ingest/test_ingest_concurrency.py runs the pipeline in worker
processes but not the server (whose PutProfileObject calls of one event-loop turn share a
batch), and the wire tests run one server in the test's process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from configparser import ConfigParser
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
from tests.support.backends import database_url_for
from tests.support.concurrency import race
from tests.support.ports import free_port
from tests.support.server import LiveServer
from tests.unit.integrations.integ_helpers import ctr
from tests.wire.test_contact_records_http import post
from tests.wire.test_objects_api import CRM

from openprofiles.settings import Settings

ROUNDS = 4
CLIENTS = 4  # per round, alternating between the two processes
WRITES = 3  # per client and round
# A second type indexing the same `_email` key as Crm, with its own unique key.
SHOP: dict[str, Any] = {
    **CRM,
    "Description": "Web shop customers",
    "Keys": {
        **{k: v for k, v in CRM["Keys"].items() if k != "crmId"},
        "shopId": CRM["Keys"]["crmId"],
    },
}


@contextmanager
def _serve(data_dir: Path, database_url: str | None, port: int, first: bool) -> Iterator[None]:
    """One `openprofiles serve` process, until the block ends; the first creates the admin
    credential. Returns once uvicorn says the application has started."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENPROFILES_")}
    command = [str(Path(sys.executable).parent / "openprofiles"), "serve", "--port", str(port)]
    command += ["--data-dir", str(data_dir)]
    command += ["--database-url", database_url] if database_url else []
    command += ["--first-run-admin"] if first else []
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    try:
        assert process.stdout is not None
        output = []
        for line in process.stdout:
            output.append(line)
            if "Application startup complete" in line:
                break
        else:
            raise AssertionError(f"the server on port {port} did not start:\n{''.join(output)}")
        # Keep reading, so a server that logs much never blocks on a full pipe.
        threading.Thread(target=process.stdout.read, daemon=True).start()
        yield
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def servers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[LiveServer]]:
    """Two server processes on one data dir (keyring, credentials) and one database."""
    backend = request.param
    data_dir = tmp_path_factory.mktemp(backend) / "data"
    with database_url_for(backend, data_dir) as url, ExitStack() as running:
        settings = Settings(data_dir=data_dir, database_url=url)
        ports = (free_port(), free_port())
        for n, port in enumerate(ports):
            running.enter_context(_serve(data_dir, url, port, first=n == 0))
        credentials = ConfigParser()
        credentials.read(data_dir / "credentials")
        [section] = credentials.sections()
        key = (
            credentials[section]["aws_access_key_id"],
            credentials[section]["aws_secret_access_key"],
        )
        yield [
            # Only what a client needs: the server's app runs in its own process.
            LiveServer(f"http://127.0.0.1:{port}", None, settings, key, key)
            for port in ports
        ]


@pytest.fixture
def domain(servers: list[LiveServer]) -> str:
    name = f"p-{uuid.uuid4().hex[:10]}"
    client = servers[0].client()
    client.create_domain(DomainName=name, DefaultExpirationDays=30)
    client.put_profile_object_type(DomainName=name, ObjectTypeName="Crm", **CRM)
    client.put_profile_object_type(DomainName=name, ObjectTypeName="Shop", **SHOP)
    return name


def _race_per_round(
    servers: list[LiveServer], caller: Callable[[LiveServer, int, int], Callable[[], list[str]]]
) -> None:
    """For each round, `CLIENTS` callers `caller(server, round, client)` released together,
    alternating between the processes."""
    for round_ in range(ROUNDS):
        race([caller(servers[n % 2], round_, n) for n in range(CLIENTS)])


def _one_profile(
    server: LiveServer, domain: str, key: str, value: str, objects: dict[str, int]
) -> None:
    """One profile holds `value` of `key`, and `objects` (count per type) are all on it."""
    client = server.client()
    found = client.search_profiles(DomainName=domain, KeyName=key, Values=[value])["Items"]
    assert len(found) == 1, f"{len(found)} profiles for one customer"
    for type_name, count in objects.items():
        listed = client.list_profile_objects(
            DomainName=domain,
            ObjectTypeName=type_name,
            ProfileId=found[0]["ProfileId"],
            MaxResults=100,
        )
        assert len(listed["Items"]) == count, type_name


def _email(round_: int) -> str:
    return f"new.customer.{round_}@example.com"


def _put(
    server: LiveServer, domain: str, type_name: str, objects: list[dict[str, str]]
) -> list[str]:
    client = server.client()
    return [
        client.put_profile_object(
            DomainName=domain, ObjectTypeName=type_name, Object=json.dumps(o)
        )["ProfileObjectUniqueKey"]
        for o in objects
    ]


def test_puts_of_one_type_make_one_profile(servers: list[LiveServer], domain: str) -> None:
    def caller(server: LiveServer, round_: int, n: int) -> Callable[[], list[str]]:
        objects = [{"id": f"{round_}-{n}-{i}", "email": _email(round_)} for i in range(WRITES)]
        return lambda: _put(server, domain, "Crm", objects)

    _race_per_round(servers, caller)
    for round_ in range(ROUNDS):
        _one_profile(servers[1], domain, "_email", _email(round_), {"Crm": CLIENTS * WRITES})


def test_puts_of_two_types_sharing_a_key_make_one_profile(
    servers: list[LiveServer], domain: str
) -> None:
    """Crm on one process, Shop on the other: the customer is found by the `_email` both index."""

    def caller(server: LiveServer, round_: int, n: int) -> Callable[[], list[str]]:
        type_name = "Crm" if n % 2 == 0 else "Shop"
        objects = [{"id": f"{round_}-{n}-{i}", "email": _email(round_)} for i in range(WRITES)]
        return lambda: _put(server, domain, type_name, objects)

    _race_per_round(servers, caller)
    half = CLIENTS // 2 * WRITES
    for round_ in range(ROUNDS):
        _one_profile(servers[0], domain, "_email", _email(round_), {"Crm": half, "Shop": half})


def test_puts_of_one_object_make_one_profile_and_one_object(
    servers: list[LiveServer], domain: str
) -> None:
    """The same record (one `crmId`, its UNIQUE key) put by every client: one object."""

    def caller(server: LiveServer, round_: int, n: int) -> Callable[[], list[str]]:
        record = {"id": f"same-{round_}", "email": _email(round_)}
        return lambda: _put(server, domain, "Crm", [record] * WRITES)

    for round_ in range(ROUNDS):
        keys = race([caller(servers[n % 2], round_, n) for n in range(CLIENTS)])
        assert len(set(keys)) == 1
        _one_profile(servers[0], domain, "_email", _email(round_), {"Crm": 1})


def test_batch_puts_and_puts_make_one_profile(servers: list[LiveServer], domain: str) -> None:
    """BatchPutProfileObject on one process (one transaction for its items), PutProfileObject on
    the other."""

    def caller(server: LiveServer, round_: int, n: int) -> Callable[[], list[str]]:
        objects = [{"id": f"{round_}-{n}-{i}", "email": _email(round_)} for i in range(WRITES)]
        if n % 2 == 1:
            return lambda: _put(server, domain, "Crm", objects)

        def batch() -> list[str]:
            items = [{"Id": o["id"], "Object": json.dumps(o)} for o in objects]
            out = server.client().batch_put_profile_object(
                DomainName=domain, ObjectTypeName="Crm", Items=items
            )
            assert out["Failed"] == []
            return [s["Id"] for s in out["Successful"]]

        return batch

    _race_per_round(servers, caller)
    for round_ in range(ROUNDS):
        _one_profile(servers[1], domain, "_email", _email(round_), {"Crm": CLIENTS * WRITES})


@pytest.fixture
def instance(servers: list[LiveServer]) -> tuple[str, str]:
    """A domain and the contact-centre instance whose contact records it takes (CTR)."""
    domain = f"c-{uuid.uuid4().hex[:10]}"
    instance = f"arn:aws:connect:us-east-1:111122223333:instance/{uuid.uuid4()}"
    client = servers[0].client()
    client.create_domain(DomainName=domain, DefaultExpirationDays=30)
    client.put_integration(DomainName=domain, Uri=instance)
    return domain, instance


def _phone(round_: int) -> str:
    return f"+1206555{round_:04d}"


def test_contact_records_of_one_new_caller_make_one_profile(
    servers: list[LiveServer], instance: tuple[str, str]
) -> None:
    """Contact records (POST /contact-records) of several contacts from one new phone number:
    the CTR template finds the caller by `_ctrPhone` (a secondary key) once a profile has it."""
    domain, instance_arn = instance

    def caller(server: LiveServer, round_: int, n: int) -> Callable[[], list[str]]:
        records = [
            ctr(f"{round_}-{n}-{i}", instance=instance_arn, address=_phone(round_))
            for i in range(WRITES)
        ]

        def send() -> list[str]:
            answered = post(server, "/contact-records", json.dumps(records), timeout=60)
            assert answered.status_code == 200, answered.text
            assert answered.json() == {"Accepted": WRITES, "Rejected": []}
            return [r["ContactId"] for r in records]

        return send

    _race_per_round(servers, caller)
    for round_ in range(ROUNDS):
        _one_profile(servers[0], domain, "_ctrPhone", _phone(round_), {"CTR": CLIENTS * WRITES})


def test_contact_events_and_records_of_one_new_caller_make_one_profile(
    servers: list[LiveServer], instance: tuple[str, str]
) -> None:
    """Contact-start events (POST /contact-events, which link the contact at once) on one
    process and contact records on the other, for contacts from one new phone number: every
    contact is linked to the one profile."""
    domain, instance_arn = instance

    def caller(server: LiveServer, round_: int, n: int) -> Callable[[], list[str]]:
        records = [
            ctr(f"{round_}-{n}-{i}", instance=instance_arn, address=_phone(round_))
            for i in range(WRITES)
        ]
        if n % 2 == 0:

            def send_records() -> list[str]:
                answered = post(server, "/contact-records", json.dumps(records), timeout=60)
                assert answered.json() == {"Accepted": WRITES, "Rejected": []}, answered.text
                return []

            return send_records

        def send_events() -> list[str]:
            linked = []
            for record in records:
                answered = post(server, "/contact-events", json.dumps(record), timeout=60)
                assert answered.status_code == 200, answered.text
                linked.append(answered.json()["ProfileId"])
            return linked

        return send_events

    for round_ in range(ROUNDS):
        linked = race([caller(servers[n % 2], round_, n) for n in range(CLIENTS)])
        client = servers[0].client()
        found = client.search_profiles(
            DomainName=domain, KeyName="_ctrPhone", Values=[_phone(round_)]
        )["Items"]
        assert len(found) == 1, f"{len(found)} profiles for one caller"
        assert set(linked) == {found[0]["ProfileId"]}
        for n in range(CLIENTS):
            for i in range(WRITES):
                contact = client.search_profiles(
                    DomainName=domain, KeyName="_ctrContactId", Values=[f"{round_}-{n}-{i}"]
                )["Items"]
                assert [p["ProfileId"] for p in contact] == [found[0]["ProfileId"]]
