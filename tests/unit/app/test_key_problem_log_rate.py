"""The warning for a key problem withheld from API callers is written once a minute per domain
and message, the next one saying how many were left out.

An operator's note: "the warning is written once per failing request. During a KMS outage
under load that is many lines." Through the real ASGI app (a KMS with no region, as
test_key_problem_logged), on SQLite and PostgreSQL; the window's clock is the test's."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import threading
from pathlib import Path

import pytest
from botocore.credentials import Credentials
from tests.support.event_loop import run_in_fresh_thread
from tests.unit.app.test_put_object_batches import Api

from openprofiles.app import create_app
from openprofiles.auth.credentials import create_credential
from openprofiles.log_limits import KEY_PROBLEM_LOG_WINDOW_SECONDS, RepeatedLines
from openprofiles.settings import Settings
from openprofiles.wire import dispatch

KEY_ARN = "arn:aws:kms:eu-west-1:123456789012:key/0b1e2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"


class Clock:
    """Monotonic seconds that move when the test says."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_many_failing_requests_make_one_line_then_a_count_per_domain(
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    clock = Clock()
    # This test's own lines and clock: the process's are left as they were.
    monkeypatch.setattr(
        dispatch, "_key_problem_lines", RepeatedLines(KEY_PROBLEM_LOG_WINDOW_SECONDS, clock=clock)
    )
    app = create_app(
        dataclasses.replace(settings, kms_endpoint_url="http://127.0.0.1:9", aws_region=None)
    )
    with app.state.services.write() as tx:
        issued = create_credential(tx, role="admin")
    api = Api(app, Credentials(issued.access_key_id, issued.secret_access_key))
    caplog.set_level(logging.WARNING, logger="openprofiles.wire")

    def create(domain: str, times: int) -> list[str]:
        """`times` CreateDomain requests at once; the warnings they logged."""
        body = {"DefaultExpirationDays": 30, "DefaultEncryptionKey": KEY_ARN}

        async def all_at_once() -> list[tuple[int, object]]:
            calls = (api.call("POST", f"/domains/{domain}", body) for _ in range(times))
            return list(await asyncio.gather(*calls))

        caplog.clear()
        answers = run_in_fresh_thread(all_at_once())
        assert [status for status, _ in answers] == [400] * times
        return [
            r.getMessage()
            for r in caplog.records
            if r.name == "openprofiles.wire" and r.levelno == logging.WARNING
        ]

    try:
        first = create("kms-a", 20)
        other_domain = create("kms-b", 5)
        clock.now += KEY_PROBLEM_LOG_WINDOW_SECONDS / 2
        within = create("kms-a", 3)
        clock.now += KEY_PROBLEM_LOG_WINDOW_SECONDS / 2
        after = create("kms-a", 2)
    finally:
        app.state.services.database.dispose()
    line = r"CreateDomain \(request id [0-9a-f-]{36}, domain %s\): a key cannot be used: .*"
    region = "set OPENPROFILES_AWS_REGION"
    assert len(first) == 1 and re.fullmatch(line % "kms-a", first[0]), first
    assert region in first[0] and "not logged" not in first[0]
    # Another domain's first failure is not left out for kms-a's.
    assert len(other_domain) == 1 and re.fullmatch(line % "kms-b", other_domain[0])
    assert within == []
    # The first after the window says how many were left out (19 + 3), and opens a new one.
    assert len(after) == 1 and re.fullmatch(line % "kms-a", after[0]), after
    assert region in after[0]
    assert after[0].endswith(
        "[22 more requests of the domain met this in the 60 s after the last such line; not logged]"
    )


def test_repeats_from_many_threads_at_once_are_each_counted_once() -> None:
    clock = Clock()
    lines = RepeatedLines(60, clock=clock)
    threads, each = 8, 500
    start = threading.Barrier(threads)
    admitted: list[int | None] = []
    guard = threading.Lock()

    def repeat() -> None:
        start.wait()
        mine = [lines.admit(("acme", "KMS is down")) for _ in range(each)]
        with guard:
            admitted.extend(mine)

    workers = [threading.Thread(target=repeat) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert [a for a in admitted if a is not None] == [0]
    clock.now += 59.9
    assert lines.admit(("acme", "KMS is down")) is None
    clock.now += 0.1
    assert lines.admit(("acme", "KMS is down")) == threads * each
    # A new window: nothing left out in it yet.
    clock.now += 60
    assert lines.admit(("acme", "KMS is down")) == 0


def test_the_keys_followed_are_bounded_and_no_count_is_dropped() -> None:
    """An API caller can make new keys (any domain name, any alias): past the bound a new key's
    lines are all written rather than followed; a key whose window passed with nothing left out
    makes room, one with a count to report does not."""
    clock = Clock()
    lines = RepeatedLines(60, clock=clock, most_followed=2)
    assert lines.admit("a") == 0
    assert lines.admit("b") == 0
    assert lines.admit("b") is None  # b has a count to report
    assert [lines.admit("c") for _ in range(3)] == [0, 0, 0]  # not followed: all written
    clock.now += 60
    assert lines.admit("c") == 0  # a's window passed with nothing left out: c takes its place
    assert lines.admit("c") is None
    assert lines.admit("b") == 1  # b's count was kept
