"""A server's log: OpenProfiles' INFO records and uvicorn's reach stderr, each line with its
time, level and logger name, in every worker process; exception messages stay withheld.

An operator review: "purged N expired profile objects" (INFO) was never printed, since no handler
was configured (Python's last resort prints WARNING and above, bare), and the lines that were
printed had no time or level."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.support.ports import free_port

from openprofiles.app import build_services
from openprofiles.context import Tx
from openprofiles.domains.service import create_domain
from openprofiles.ingest.pipeline import ingest_object
from openprofiles.object_types.service import put_object_type
from openprofiles.settings import Settings

STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"
MARKER = "leakmarker51c9"


def _with_an_expired_object(data_dir: Path) -> None:
    """A domain whose object type keeps objects a day, and an object stored two days ago."""
    services = build_services(Settings(data_dir=data_dir))
    try:
        wrapped = services.keys.new_domain_key("logs", None)
        with services.write() as tx:
            create_domain(
                tx,
                domain_name="logs",
                config={"DefaultExpirationDays": 30},
                key_id=wrapped.key_id,
                wrapped_key=wrapped.wrapped,
            )
            put_object_type(
                tx,
                domain_name="logs",
                name="Short",
                params={
                    "ExpirationDays": 1,
                    "AllowProfileCreation": True,
                    "Fields": {"id": {"Source": "_source.id"}},
                    "Keys": {
                        "id": [{"StandardIdentifiers": ["PROFILE", "UNIQUE"], "FieldNames": ["id"]}]
                    },
                },
            )
        with services.database.write() as conn:
            earlier = Tx(conn=conn, services=services, now=datetime.now(UTC) - timedelta(days=2))
            ingest_object(
                earlier,
                domain_name="logs",
                object_type_name="Short",
                source={"id": "s1"},
                raw=json.dumps({"id": "s1"}),
            )
    finally:
        services.database.dispose()


def test_serve_logs_info_records_with_time_level_and_logger_in_every_worker(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    _with_an_expired_object(data_dir)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENPROFILES_")}
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "openprofiles"), "serve"]
        + ["--port", str(free_port()), "--data-dir", str(data_dir), "--workers", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    lines: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        lines.extend(line.rstrip("\n") for line in process.stdout)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            started = [x for x in lines if x.endswith("Application startup complete.")]
            if len(started) == 2 and any("purged" in x for x in lines):
                break
            time.sleep(0.2)
    finally:
        process.terminate()
        process.wait(timeout=30)
        reader.join(timeout=10)
    output = "\n".join(lines)
    # The background purge of a worker, at INFO, from OpenProfiles' logger.
    assert re.search(
        rf"^{STAMP} INFO openprofiles\.objects\.expiry: purged 1 expired profile objects$",
        output,
        re.M,
    ), output
    # uvicorn's own logger still speaks, in each worker process, in the same format.
    startup = re.findall(
        rf"^{STAMP} INFO uvicorn\.error: Application startup complete\.$", output, re.M
    )
    assert len(startup) == 2, output
    # And in the supervising process (which binds the socket itself: no "Uvicorn running on").
    assert re.search(rf"^{STAMP} INFO uvicorn\.error: Started parent process ", output, re.M), (
        output
    )


def test_the_server_s_logging_still_withholds_exception_messages() -> None:
    """The server's handler and format print what logging_setup made of a record: the
    exception's type and frames, not its message; other libraries' INFO stays out."""
    script = textwrap.dedent(
        f"""
        import logging, logging.config
        from openprofiles import logging_setup
        logging_setup.install()
        logging.config.dictConfig(logging_setup.serving_log_config())
        try:
            int("{MARKER}")
        except ValueError:
            logging.getLogger("openprofiles.wire").exception("request failed")
        logging.getLogger("openprofiles.objects.expiry").info("purged %d", 3)
        logging.getLogger("somelibrary").info("unvetted {MARKER}")
        logging.getLogger("somelibrary").warning("a warning")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert MARKER not in result.stderr, result.stderr
    assert re.search(rf"^{STAMP} ERROR openprofiles\.wire: request failed$", result.stderr, re.M)
    assert "ValueError: (message withheld: it may carry personal data)" in result.stderr
    assert re.search(
        rf"^{STAMP} INFO openprofiles\.objects\.expiry: purged 3$", result.stderr, re.M
    )
    assert re.search(rf"^{STAMP} WARNING somelibrary: a warning$", result.stderr, re.M)
