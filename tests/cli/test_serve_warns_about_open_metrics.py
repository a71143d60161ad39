"""`serve` on an address beyond this machine with GET /metrics on and no
OPENPROFILES_METRICS_TOKEN warns at start, as it warns about plain HTTP
(tests/cli/test_deployment_warnings.py): the scrape answers anyone who reaches the server, and
its labels name domains. Never refused; silenced by a token, by metrics off, or by a loopback
address."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from click.testing import CliRunner
from tests.support.ports import free_port

from openprofiles import serving
from openprofiles.cli import main
from openprofiles.settings import Settings

pytestmark = pytest.mark.usefixtures("logging_as_it_was")

TOKEN = "0123456789abcdef0123456789abcdef"


def _open_metrics_warnings(settings: Settings, caplog: pytest.LogCaptureFixture) -> list[str]:
    """What `serve` logs before it serves about an open /metrics."""
    caplog.set_level(logging.WARNING)
    with serving.bind(settings) as listeners:
        list(serving.prepare(settings, listeners, first_run_admin=False))
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "GET /metrics answers anyone" in r.getMessage()
    ]


def test_serve_on_every_address_with_open_metrics_warns_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(data_dir=tmp_path / "data", host="0.0.0.0", port=free_port())
    assert _open_metrics_warnings(settings, caplog) == [
        "Listening on 0.0.0.0, beyond this machine, GET /metrics answers anyone who reaches the "
        "server, and its labels name the domains. Set OPENPROFILES_METRICS_TOKEN to a secret "
        "that scrapes must send as a bearer token, keep /metrics to the monitoring network at "
        "a proxy, or set OPENPROFILES_METRICS=off (docs/operations.md, 'In front of the "
        "server')."
    ]


@pytest.mark.parametrize(
    "changes",
    [
        {"host": "127.0.0.1"},
        {"host": "localhost"},
        {"host": "0.0.0.0", "metrics_token": TOKEN},
        {"host": "0.0.0.0", "metrics": False},
    ],
)
def test_no_warning_when_metrics_are_kept_or_off(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, changes: dict[str, object]
) -> None:
    settings = Settings(data_dir=tmp_path / "data", port=free_port()).with_overrides(**changes)
    assert _open_metrics_warnings(settings, caplog) == []


def test_serve_command_warns_and_the_token_silences_it_unshown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # No server: only what it says.
    monkeypatch.setattr(serving, "run", lambda settings, listeners: None)
    caplog.set_level(logging.DEBUG)
    arguments = ["serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path / "data")]
    result = CliRunner().invoke(main, [*arguments, "--port", str(free_port())])
    assert result.exit_code == 0, result.output
    assert len([r for r in caplog.records if "GET /metrics answers" in r.getMessage()]) == 1
    caplog.clear()
    result = CliRunner().invoke(
        main,
        [*arguments, "--port", str(free_port())],
        env={"OPENPROFILES_METRICS_TOKEN": TOKEN},
    )
    assert result.exit_code == 0, result.output
    assert [r for r in caplog.records if "GET /metrics answers" in r.getMessage()] == []
    assert TOKEN not in result.output and TOKEN not in caplog.text
