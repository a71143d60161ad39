"""The warning for a key problem withheld from API callers is written once a minute per domain
and message, the next one saying how many were left out; no count is lost, and the limiter's
table stays bounded.

An operator's note: "the warning is written once per failing request. During a KMS outage
under load that is many lines." Through the real ASGI app (a KMS with no region, as
test_key_problem_logged), on SQLite and PostgreSQL; the window's clock is the test's.

A review of the limiter found two ways to lose what it counted: a full table (1024 pairs) no
longer followed new pairs, so after an outage touching more, every new pair logged a line per
request until restart; and a count was only written when its pair failed again, so the
repeats of an outage that ended within the minute were never reported. Now the pair followed
longest makes room, its count written first, and the counts of pairs whose window has passed
are written at the next key problem of any pair."""

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
from openprofiles.ui import web
from openprofiles.wire import dispatch

KEY_ARN = "arn:aws:kms:eu-west-1:123456789012:key/0b1e2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"


class Clock:
    """Monotonic seconds that move when the test says."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def fresh_key_problem_lines() -> None:
    """The process's limiters follow nothing from earlier tests, whatever their order."""
    dispatch._key_problem_lines.clear()
    web._key_problem_lines.clear()


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
        dispatch,
        "_key_problem_lines",
        RepeatedLines(
            KEY_PROBLEM_LOG_WINDOW_SECONDS, report=dispatch._report_left_out, clock=clock
        ),
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
    # kms-b failed no more: its window has passed, and its count (4) is written before the
    # next line of any domain, on a line of its own.
    assert len(after) == 2, after
    assert re.fullmatch(r"API \(domain kms-b\): a key cannot be used: .*", after[0]), after
    assert region in after[0]
    assert after[0].endswith(
        "[4 more requests of the domain met this in the 60 s after the last such line; not logged]"
    )
    # The first after the window says how many were left out (19 + 3), and opens a new one.
    assert re.fullmatch(line % "kms-a", after[1]), after
    assert region in after[1]
    assert after[1].endswith(
        "[22 more requests of the domain met this in the 60 s after the last such line; not logged]"
    )


def test_repeats_from_many_threads_at_once_are_each_counted_once() -> None:
    clock = Clock()
    reported: list[tuple[str, int]] = []
    lines = RepeatedLines(60, report=lambda key, n: reported.append((key, n)), clock=clock)
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


def test_a_full_table_lets_the_longest_followed_key_go_with_its_count() -> None:
    """An API caller can make new keys (any domain name, any alias): when the table is full, a
    new key takes the place of the one followed longest, whose count is reported first. It was:
    past the bound, a new key's lines were all written, for good (a key with a count was never
    let go)."""
    clock = Clock()
    reported: list[tuple[str, int]] = []
    lines = RepeatedLines(
        60, report=lambda key, n: reported.append((key, n)), clock=clock, most_followed=2
    )
    assert lines.admit("a") == 0
    assert lines.admit("a") is None  # a has a count to report
    clock.now += 1
    assert lines.admit("b") == 0
    assert [lines.admit("b") for _ in range(2)] == [None, None]
    clock.now += 1
    # c makes room: a, followed longest, goes, its count reported before c's line.
    assert lines.admit("c") == 0 and reported == [("a", 1)]
    # c is followed: its repeats are counted, not written (they were all written).
    assert [lines.admit("c") for _ in range(3)] == [None, None, None]
    assert reported == [("a", 1)]
    # b's count was kept, and is written after b's window, as ever.
    clock.now += 59
    assert lines.admit("b") == 2
    assert reported == [("a", 1)]
    # a, let go, is new again: written at once (a line more in its window, past the bound),
    # and c, now followed longest, makes room with its count.
    assert lines.admit("a") == 0 and reported == [("a", 1), ("c", 3)]


def test_a_count_whose_window_passed_is_reported_at_the_next_line_of_any_key() -> None:
    """Repeats that stop within the window: their count was written only if the same key came
    again, so the tail of an outage went unreported. Now the first `admit` of any key after
    their window reports it; until then it waits (at the latest, the next line of any key)."""
    clock = Clock()
    reported: list[tuple[str, int]] = []
    lines = RepeatedLines(60, report=lambda key, n: reported.append((key, n)), clock=clock)
    assert lines.admit("kms-a") == 0
    assert [lines.admit("kms-a") for _ in range(4)] == [None] * 4
    clock.now += 30
    assert lines.admit("kms-b") == 0
    assert lines.admit("kms-b") is None
    assert reported == []  # kms-a's window has not passed
    clock.now += 30
    # kms-a's window has passed: the next admit of any key, even one only counted, reports it.
    assert lines.admit("kms-b") is None
    assert reported == [("kms-a", 4)]
    # Reported once: kms-a is followed no more, so its next line says nothing left out.
    assert lines.admit("kms-a") == 0
    clock.now += 30
    assert lines.admit("kms-c") == 0
    assert reported == [("kms-a", 4), ("kms-b", 2)]
    # A key with nothing left out is let go without a report.
    clock.now += 60
    assert lines.admit("kms-c") == 0
    assert reported == [("kms-a", 4), ("kms-b", 2)]


def test_the_api_writes_a_count_it_lets_go_as_its_own_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The API's report (wire.dispatch) names the domain and the message, as its lines do."""
    caplog.set_level(logging.WARNING, logger="openprofiles.wire")
    dispatch._report_left_out(("kms-a", "The KMS is unreachable."), 7)
    dispatch._report_left_out((None, "The KMS is unreachable."), 1)
    assert [r.getMessage() for r in caplog.records] == [
        "API (domain kms-a): a key cannot be used: The KMS is unreachable. [7 more requests of "
        "the domain met this in the 60 s after the last such line; not logged]",
        "API (domain -): a key cannot be used: The KMS is unreachable. [1 more requests of "
        "the domain met this in the 60 s after the last such line; not logged]",
    ]
