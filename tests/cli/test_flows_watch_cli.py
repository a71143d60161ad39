"""`openprofiles flows watch` keeps watching whatever one pass meets: a domain whose key is
disabled (its flows are passed over, the other domains' run), and a pass that fails as a whole
(here its database table gone for a moment), which is logged, the next pass trying again. It
used to exit with code 1 on either (a review's reproduction: one tenant's disabled key stopped
every tenant's flows)."""

from __future__ import annotations

import os
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.unit.flows.test_flows_failed_items import jsonl, user
from tests.unit.flows.test_flows_templates import flow_definition
from tests.unit.integrations.integ_helpers import make_domain

from openprofiles.app import build_services
from openprofiles.crypto.keyring import Keyring
from openprofiles.integrations.service import put_integration
from openprofiles.settings import Settings

EVENT = {"TriggerType": "Event"}
WAIT_SECONDS = 60.0


class Output:
    """The lines a process prints, read on a thread of their own, waited for by content."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, text: str) -> str:
        deadline = time.monotonic() + WAIT_SECONDS
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                raise AssertionError(f"the watch ended before {text!r}:\n" + "\n".join(self.seen))
            self.seen.append(line)
            if text in line:
                return line
        raise AssertionError(f"no {text!r} within {WAIT_SECONDS} s:\n" + "\n".join(self.seen))


@contextmanager
def watching(data_dir: Path) -> Iterator[tuple[subprocess.Popen[str], Output]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENPROFILES_")}
    env |= {"OPENPROFILES_FLOW_FOLDER_SETTLE_SECONDS": "0"}
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "openprofiles"), "flows", "watch"]
        + ["--every", "0.2", "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        yield process, Output(process)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)


def test_the_watch_goes_on_past_a_disabled_key_and_a_failed_pass(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    services = build_services(settings)
    try:
        keyring = Keyring(settings.keyring_path)
        key = keyring.create_key("tenant-a")
        make_domain(services, "a-tenant", key.arn(settings.region, settings.account_id))
        make_domain(services, "b-tenant")
        for domain, n in (("a-tenant", 1), ("b-tenant", 2)):
            # Under DATA_DIR/flows, where flows may read by default.
            folder = settings.data_dir / "flows" / domain
            folder.mkdir(parents=True)
            (folder / "first.jsonl").write_text(jsonl(user(n)))
            with services.write() as tx:
                put_integration(
                    tx,
                    domain_name=domain,
                    uri=None,
                    object_type_name="Zendesk-users",
                    flow_definition=flow_definition(f"crm-{domain}", "file://", str(folder), EVENT),
                )
        keyring.disable(key.key_id)
    finally:
        services.database.dispose()

    with watching(settings.data_dir) as (process, output):
        output.wait_for("b-tenant/crm-b-tenant (Event): COMPLETED, 1 ingested")
        # The table every pass starts from, gone and back: the pass in between fails whole.
        database = sqlite3.connect(settings.sqlite_path, timeout=30)
        try:
            database.execute("ALTER TABLE integration RENAME TO integration_away")
            database.commit()
            failed = output.wait_for("A pass over the due flows failed")
            database.execute("ALTER TABLE integration_away RENAME TO integration")
            database.commit()
        finally:
            database.close()
        (settings.data_dir / "flows" / "b-tenant" / "second.jsonl").write_text(jsonl(user(3)))
        output.wait_for("b-tenant/crm-b-tenant (Event): COMPLETED, 1 ingested")
        assert process.poll() is None

    assert "OperationalError" in failed
    assert "a-tenant" not in failed
    # The disabled key's domain, by name and error code, in every pass.
    assert any("a-tenant" in line and "AccessDeniedException" in line for line in output.seen), (
        output.seen
    )
