"""OPENPROFILES_LOG_LEVEL: how much a server logs on stderr.

An operator's note: "No debug log level setting." DEBUG adds OpenProfiles' DEBUG records (not
uvicorn's, whose DEBUG and TRACE lines name clients' addresses, nor other libraries');
WARNING and ERROR leave out what is below them, uvicorn's INFO lines and the audit lines on
stderr included; INFO, the default, is the server's logging as it was. A value that is not a
level stops the server at start-up, naming the variable and the levels."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from tests.support.ports import free_port

from openprofiles.settings import Settings

STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"


def _environment(**variables: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENPROFILES_")}
    return {**env, **variables}


@pytest.mark.parametrize(
    ("given", "level"),
    [(None, "INFO"), ("debug", "DEBUG"), ("Warning", "WARNING"), ("ERROR", "ERROR")],
)
def test_the_level_is_read_in_any_case_and_is_info_by_default(
    given: str | None, level: str
) -> None:
    environ = {} if given is None else {"OPENPROFILES_LOG_LEVEL": given}
    assert Settings.from_env(environ).log_level == level


@pytest.mark.parametrize("given", ["verbose", "TRACE", "CRITICAL", "10", "warn"])
def test_a_value_that_is_not_a_level_is_refused_naming_the_variable_and_the_levels(
    given: str,
) -> None:
    with pytest.raises(
        ValueError, match="^OPENPROFILES_LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, not"
    ):
        Settings.from_env({"OPENPROFILES_LOG_LEVEL": given})


def test_serve_with_a_level_that_is_not_one_stops_before_it_starts(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "openprofiles"), "serve"]
        + ["--port", str(free_port()), "--data-dir", str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=60,
        env=_environment(OPENPROFILES_LOG_LEVEL="loud"),
    )
    assert result.returncode == 2, result.stderr
    assert (
        "OPENPROFILES_LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, not 'LOUD'"
        in result.stderr
    )
    assert not (tmp_path / "data").exists()


# What `openprofiles serve` does to logging, in its order: the command group's setup, serve's
# (cli.serve), then uvicorn's, which applies serving.run's log_config and log_level in each of
# its processes (uvicorn.Config); records are logged after each step.
SERVE_LIKE = textwrap.dedent(
    """
    import logging
    import uvicorn
    from openprofiles import logging_setup
    from openprofiles.settings import Settings

    def log_every_kind(step):
        for name in ("openprofiles.identity.schedule", "uvicorn.error", "somelibrary"):
            for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR):
                text = f"{step} {name} {logging.getLevelName(level)}"
                logging.getLogger(name).log(level, text)
        logging.getLogger("openprofiles.audit").info("%s audit line", step)

    settings = Settings.from_env()
    logging_setup.install()
    logging_setup.log_to_stderr()
    logging_setup.log_to_stderr(serving=True, level=settings.log_level)
    log_every_kind("serve")
    uvicorn.Config(
        "openprofiles.serving:worker_app",
        factory=True,
        log_level="info",
        log_config=logging_setup.serving_log_config(None, level=settings.log_level),
        access_log=False,
    )
    log_every_kind("worker")
    """
)

OURS, UVICORN, OTHER, AUDIT = (
    "openprofiles.identity.schedule",
    "uvicorn.error",
    "somelibrary",
    "openprofiles.audit",
)
ERRORS = {(OURS, "ERROR"), (UVICORN, "ERROR"), (OTHER, "ERROR")}
WARNINGS = {(OURS, "WARNING"), (UVICORN, "WARNING"), (OTHER, "WARNING")} | ERRORS
INFOS = {(OURS, "INFO"), (UVICORN, "INFO"), (AUDIT, "INFO")} | WARNINGS
# The (logger, level) pairs printed at each OPENPROFILES_LOG_LEVEL: never uvicorn's DEBUG or
# another library's below WARNING.
EXPECTED = {"DEBUG": {(OURS, "DEBUG")} | INFOS, "INFO": INFOS, "WARNING": WARNINGS, "ERROR": ERRORS}


@pytest.mark.parametrize("level", [None, "DEBUG", "INFO", "WARNING", "ERROR"])
def test_debug_records_are_printed_at_debug_only(level: str | None) -> None:
    variables = {} if level is None else {"OPENPROFILES_LOG_LEVEL": level}
    result = subprocess.run(
        [sys.executable, "-c", SERVE_LIKE],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=_environment(**variables),
    )
    for step in ("serve", "worker"):
        printed = set()
        for line in result.stderr.splitlines():
            found = re.fullmatch(rf"{STAMP} (\w+) ([\w.]+): {step} (.*)", line)
            if found is None:
                continue
            record_level, logger_name, text = found.groups()
            if logger_name == "openprofiles.audit":
                assert text == "audit line", line
            else:
                assert text == f"{logger_name} {record_level}", line
            printed.add((logger_name, record_level))
        expected = EXPECTED[level or "INFO"]
        if step == "serve":
            # uvicorn sets its loggers' levels when it starts, and logs nothing before.
            expected = expected - {(UVICORN, "INFO")}
        assert printed == expected, (step, result.stderr)


def test_serve_at_warning_prints_no_info_line(tmp_path: Path) -> None:
    """The real server, with two worker processes: uvicorn's start and stop (INFO) are left
    out, in the supervisor and in the workers, which apply the level themselves."""
    port = free_port()
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "openprofiles"), "serve"]
        + ["--port", str(port), "--data-dir", str(tmp_path / "data"), "--workers", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=_environment(OPENPROFILES_LOG_LEVEL="warning"),
    )
    lines: list[str] = []

    def read() -> None:
        assert process.stderr is not None
        lines.extend(line.rstrip("\n") for line in process.stderr)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    answered = False
    try:
        # A worker that answers has started (and printed its start, at INFO, if it would).
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None and not answered:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
                    answered = r.status == 200
            except OSError:
                time.sleep(0.2)
    finally:
        process.terminate()
        process.wait(timeout=30)
        reader.join(timeout=10)
    output = "\n".join(lines)
    assert answered, output
    assert not re.search(rf"^{STAMP} (INFO|DEBUG) ", output, re.M), output
    assert "Application startup complete" not in output, output
