"""`serve --host` with an IPv6 address prints URLs that work: the address in brackets.

An operator review: `--host ::1` printed http://::1:18261, which no client reads as a host and
a port (and the same in the first-run lines: `aws --endpoint-url`, boto3's endpoint_url, the
sign-in page's address)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from click.testing import CliRunner
from tests.support.ports import free_port

from openprofiles import serving
from openprofiles.cli import main


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


pytestmark = [
    pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback here"),
    pytest.mark.usefixtures("logging_as_it_was"),
]


def test_serve_on_an_ipv6_address_prints_it_in_brackets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No server: only what it says.
    monkeypatch.setattr(serving, "run", lambda settings, listeners: None)
    port = free_port()
    result = CliRunner().invoke(
        main,
        ["serve", "--host", "::1", "--port", str(port), "--data-dir", str(tmp_path / "data")]
        + ["--first-run-admin"],
    )
    assert result.exit_code == 0, result.output
    endpoint = f"http://[::1]:{port}"
    assert f"OpenProfiles listening on {endpoint}" in result.stdout
    assert f"aws --endpoint-url {endpoint} customer-profiles" in result.stdout
    assert f"Sign in to the web pages at {endpoint}/ui/" in result.stdout
    assert "http://::1" not in result.output


def test_an_ipv6_address_in_use_is_named_in_brackets(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET6) as taken:
        taken.bind(("::1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(
            main, ["serve", "--host", "::1", "--port", str(port), "--data-dir", str(tmp_path)]
        )
    assert result.exit_code == 1
    assert f"Cannot listen on [::1]:{port}: Address already in use." in result.output
