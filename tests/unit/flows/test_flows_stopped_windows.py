"""A run stopped by Ctrl-C or SIGTERM between its claim and its start, or during its final write,
ends FAILED at once and releases its flow — on SQLite and PostgreSQL.

A run stopped while it read its items ended FAILED (INTERRUPTED: tests/cli/test_flows_stopped.py),
but a stop landing after the claim had committed and before the run's reading began, or while the
run's end was being written (that transaction rolled back), left the run RUNNING: the flow stayed
held, by no one, for STALE_AFTER (15 minutes). Each test here delivers the real signal to this
process at the exact point, from a hook that point calls: the run's clock, first read once the
claim has inserted the run (the claim's transaction committed, the reading not begun), or the
statement that writes the run's end, about to be sent to the database. Python raises the
signal's KeyboardInterrupt (SIGTERM's `Terminated`, as `flows watch` and `flows run` take it) as
the signal is raised."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from openprofiles.cli_support import Terminated, sigterm_as_ctrl_c
from openprofiles.context import Services
from openprofiles.flows import models as flow_models
from openprofiles.flows import service as flows

from .test_flows_failed_items import counts
from .test_flows_one_run_at_a_time import export, runs, stored_status

STOPPED = "its process was asked to end"


class Signal:
    """Delivers `signum` to this process once, at the point a test chooses (`send`)."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.sent = False

    def send(self) -> None:
        if not self.sent:
            self.sent = True
            signal.raise_signal(self.signum)


class AfterClaim(Signal):
    """A run's clock that delivers the signal when it is first read after the flow's claim
    inserted its run: `Renewal`'s start (flows.claims), before the run lists its source. (An
    Event check reads it before its claim too, listing the source: no run is claimed then.)"""

    def __init__(self, services: Services, signum: int) -> None:
        super().__init__(signum)
        self.claimed = False
        self.engine = services.database.engine
        event.listen(self.engine, "after_cursor_execute", self._seen)

    def _seen(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO FLOW_RUN"):
            self.claimed = True

    def __call__(self) -> float:
        if self.claimed:
            self.send()
        return time.monotonic()

    def close(self) -> None:
        event.remove(self.engine, "after_cursor_execute", self._seen)


class AtTheEnd(Signal):
    """Delivers the signal as the run's end (its status and finished_at) is about to be
    written."""

    def __init__(self, services: Services, signum: int) -> None:
        super().__init__(signum)
        self.engine = services.database.engine
        event.listen(self.engine, "before_cursor_execute", self._seen)

    def _seen(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        text = statement.lstrip().upper()
        if text.startswith("UPDATE FLOW_RUN") and "FINISHED_AT" in text:
            self.send()

    def close(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._seen)


@pytest.fixture
def sigterm() -> Iterator[None]:
    """SIGTERM raises Terminated here, as in the commands (cli_support.sigterm_as_ctrl_c)."""
    with sigterm_as_ctrl_c():
        yield


def the_stopped_run(services: Services) -> flow_models.FlowRun:
    """The flow's one run: ended FAILED (as stored, not left RUNNING), saying it was stopped."""
    (run,) = runs(services)
    assert stored_status(services, run.run_id) == "FAILED"
    assert run.error is not None and STOPPED in run.error, run.error
    assert run.finished_at is not None
    return run


def free(services: Services) -> None:
    """The flow is not held: a run asked for is not refused, and reads what is left."""
    again = flows.run_flow(services, domain_name="flows", flow_name="crm", complete=False)
    assert again.status == "COMPLETED"


def test_ctrl_c_between_the_claim_and_the_start_ends_the_run(
    services: Services, tmp_path: Path
) -> None:
    export(services, tmp_path, trigger={"TriggerType": "OnDemand"})
    clock = AfterClaim(services, signal.SIGINT)
    try:
        with pytest.raises(KeyboardInterrupt):
            flows.run_flow(services, domain_name="flows", flow_name="crm", clock=clock)
    finally:
        clock.close()
    assert clock.sent
    assert counts(the_stopped_run(services)) == ("FAILED", 0, 0, 0, 0)
    free(services)


def test_sigterm_between_an_event_claim_and_the_start_ends_the_run(
    services: Services, tmp_path: Path, sigterm: None
) -> None:
    export(services, tmp_path)
    clock = AfterClaim(services, signal.SIGTERM)
    try:
        with pytest.raises(Terminated):
            flows.run_due_flows(services, now=datetime.now(UTC), clock=clock)
    finally:
        clock.close()
    assert clock.sent
    assert counts(the_stopped_run(services)) == ("FAILED", 0, 0, 0, 0)
    free(services)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stop_during_the_final_write_ends_the_run(
    services: Services, tmp_path: Path, sigterm: None, signum: int
) -> None:
    export(services, tmp_path)
    ending = AtTheEnd(services, signum)
    try:
        with pytest.raises(KeyboardInterrupt):
            flows.run_due_flows(services, now=datetime.now(UTC))
    finally:
        ending.close()
    assert ending.sent
    # Its items were read and checkpointed: its counts are kept, and nothing is left to read.
    run = the_stopped_run(services)
    assert counts(run) == ("FAILED", 2, 4, 3, 1)
    assert flows.run_due_flows(services, now=datetime.now(UTC)) == []
