"""PostgreSQL's shared lock table and POST /contact-records: a transaction holds an advisory lock
for each contact, UNIQUE value and key of its records until it ends, in a table of
max_locks_per_transaction x max_connections slots that every session shares (6,400 at the
defaults). A body of 500 records (the loaders' batch) held about 2,500 in one transaction, so
three at once filled the table and a body of 5,000 never applied (SQLSTATE 53200, answered
500). A body is now applied a bounded number of records a transaction."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from sqlalchemy import create_engine, text
from tests.support.backends import postgres_schema_url
from tests.support.server import LiveServer, run_server
from tests.unit.integrations.integ_helpers import ctr

from openprofiles.settings import Settings

pytestmark = pytest.mark.postgres

# What a transaction of the batch may hold at most: PostgreSQL's default lock table takes a
# dozen such transactions at once (the fix applies 100 records, about 500 locks, at a time).
MOST_LOCKS_A_TRANSACTION = 1000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp: Path = tmp_path_factory.mktemp("pglocks")
    with postgres_schema_url() as url:
        settings = Settings(
            data_dir=tmp / "data", database_url=url, matching_schedule_check_seconds=0
        )
        with run_server(settings) as live:
            yield live


def post(server: LiveServer, body: str) -> httpx.Response:
    request = AWSRequest(
        method="POST",
        url=server.url + "/contact-records",
        data=body.encode(),
        headers={"Content-Type": "application/json"},
    )
    SigV4Auth(Credentials(*server.admin_key), "profile", server.settings.region).add_auth(request)
    return httpx.post(
        server.url + "/contact-records",
        content=body.encode(),
        headers=dict(request.headers.items()),
        timeout=120.0,
    )


def domain_with_instance(server: LiveServer) -> tuple[str, str]:
    domain = f"d-{uuid.uuid4().hex[:10]}"
    server.client().create_domain(DomainName=domain, DefaultExpirationDays=30)
    arn = f"arn:aws:connect:us-east-1:111122223333:instance/{uuid.uuid4()}"
    server.client().put_integration(DomainName=domain, Uri=arn)
    return domain, arn


def body_of(arn: str, count: int, prefix: str) -> str:
    return json.dumps(
        [
            ctr(f"{prefix}-{n}", instance=arn, address=f"+1206{5000000 + n:07d}")
            for n in range(count)
        ]
    )


def test_a_batch_transaction_holds_a_bounded_number_of_advisory_locks(server: LiveServer) -> None:
    """The batch is stopped at its first write of `contact_record` (written once a transaction's
    records are applied, their locks all taken) by a lock this test holds on that table; the
    advisory locks its transaction holds then are counted in pg_locks. 500 records held about
    2,500; now at most MOST_LOCKS_A_TRANSACTION."""
    _domain, arn = domain_with_instance(server)
    body = body_of(arn, 500, "bound")
    engine = create_engine(
        server.settings.database_url.replace("postgresql://", "postgresql+psycopg://", 1)
    )
    answers: list[httpx.Response] = []
    sender = threading.Thread(target=lambda: answers.append(post(server, body)))
    held: int | None = None
    try:
        with engine.connect() as blocker, engine.connect() as watcher:
            blocker.execute(text("LOCK TABLE contact_record IN EXCLUSIVE MODE"))
            sender.start()
            # Wait (bounded) until the batch's session waits for the table: its locks are taken.
            deadline = time.monotonic() + 60
            waiting = None
            while waiting is None and time.monotonic() < deadline:
                waiting = watcher.execute(
                    text(
                        "SELECT l.pid FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                        "WHERE c.relname = 'contact_record' "
                        "AND c.relnamespace = to_regnamespace(current_schema()) "
                        "AND NOT l.granted"
                    )
                ).scalar()
                watcher.rollback()
                if waiting is None:
                    time.sleep(0.05)
            assert waiting is not None, "the batch never reached contact_record"
            held = watcher.execute(
                text(
                    "SELECT count(*) FROM pg_locks "
                    "WHERE pid = :pid AND locktype = 'advisory' AND granted"
                ),
                {"pid": waiting},
            ).scalar()
            blocker.rollback()  # lets the batch go on
        sender.join(timeout=120)
    finally:
        engine.dispose()
    assert held is not None and held > 0
    assert held <= MOST_LOCKS_A_TRANSACTION, held
    [answer] = answers
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"Accepted": 500, "Rejected": []}


def test_a_batch_of_several_transactions_is_applied_whole_and_resent_changes_nothing(
    server: LiveServer,
) -> None:
    """Every record is committed before the answer, and a resend (an answer lost) is a repeat."""
    domain, arn = domain_with_instance(server)
    body = body_of(arn, 250, "resend")
    for _ in range(2):
        answer = post(server, body)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"Accepted": 250, "Rejected": []}
        stats: dict[str, Any] = server.client().get_domain(DomainName=domain)["Stats"]
        assert (stats["ProfileCount"], stats["ObjectCount"]) == (250, 250)
