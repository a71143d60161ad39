"""Two deployment foot-guns are warned about on stderr (never refused):

- a password in --database-url, which the banner hides but the process list (ps) shows to every
  local user; the environment (OPENPROFILES_DATABASE_URL), ~/.pgpass and PGPASSWORD do not;
- `serve --host` on an address beyond this machine with no proxy named in
  OPENPROFILES_FORWARDED_ALLOW_IPS: plain HTTP to the network, and behind a TLS proxy every
  request looks like http (session cookies not marked Secure, the throttle sees the proxy).

A security review: both were done without a word."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from tests.support.installation import install
from tests.support.ports import free_port

from openprofiles import serving
from openprofiles.cli import main
from openprofiles.settings import Settings

pytestmark = pytest.mark.usefixtures("logging_as_it_was")

PASSWORD = "s3cr%40t"


def _password_warnings(stderr: str) -> list[str]:
    return [
        line for line in stderr.splitlines() if "--database-url option holds a password" in line
    ]


@pytest.fixture
def postgres_url() -> Iterator[str]:
    from tests.support.backends import postgres_schema_url

    with postgres_schema_url() as url:
        yield url


@pytest.mark.postgres
def test_a_password_in_database_url_is_warned_about_once_and_not_shown(
    tmp_path: Path, postgres_url: str
) -> None:
    # The test server trusts local connections, so any password opens it.
    with_password = postgres_url.replace("postgres@", f"postgres:{PASSWORD}@", 1)
    install(Settings(data_dir=tmp_path, database_url=postgres_url))
    result = CliRunner().invoke(
        main, ["credentials", "list", "--data-dir", str(tmp_path), "--database-url", with_password]
    )
    assert result.exit_code == 0, result.output
    assert _password_warnings(result.stderr) == [
        "Warning: the --database-url option holds a password, which other local users can read "
        "in the process list (ps). Give the URL in OPENPROFILES_DATABASE_URL instead, or give a "
        "URL without a password and put the password in ~/.pgpass or PGPASSWORD (libpq reads "
        "them)."
    ]
    assert "s3cr" not in result.output
    # The command's output is untouched: scripts read stdout.
    assert result.stdout == ""

    # The same URL from the environment, which ps does not show: no warning.
    result = CliRunner().invoke(
        main,
        ["credentials", "list", "--data-dir", str(tmp_path)],
        env={"OPENPROFILES_DATABASE_URL": with_password},
    )
    assert result.exit_code == 0, result.output
    assert _password_warnings(result.stderr) == []
    # Without a password on the command line (libpq's ~/.pgpass or PGPASSWORD): no warning.
    result = CliRunner().invoke(
        main, ["credentials", "list", "--data-dir", str(tmp_path), "--database-url", postgres_url]
    )
    assert result.exit_code == 0, result.output
    assert _password_warnings(result.stderr) == []


@pytest.mark.postgres
def test_serve_warns_about_a_password_in_database_url_before_anything_else(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No server: only what it says.
    monkeypatch.setattr(serving, "run", lambda settings, listeners: None)
    with_password = postgres_url.replace("postgres@", f"postgres:{PASSWORD}@", 1)
    result = CliRunner().invoke(
        main,
        ["serve", "--port", str(free_port()), "--data-dir", str(tmp_path / "data")]
        + ["--database-url", with_password],
    )
    assert result.exit_code == 0, result.output
    assert len(_password_warnings(result.stderr)) == 1
    assert result.stderr.splitlines()[0] == _password_warnings(result.stderr)[0]
    assert "s3cr" not in result.output


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://bob:P@W@127.0.0.1:1/db",  # an '@' not percent-encoded
        "postgresql://bob@127.0.0.1:1/db?sslpassword=x",
        "postgresql://bob@127.0.0.1:1/db?password=x",
    ],
)
def test_every_way_a_url_carries_a_password_is_warned_about(url: str) -> None:
    """Whatever the database then answers (here: nothing listens)."""
    result = CliRunner().invoke(main, ["credentials", "list", "--database-url", url])
    assert result.exit_code == 1, result.output
    assert len(_password_warnings(result.stderr)) == 1
    for part in ("P@", "W@", "=x"):
        assert part not in result.output


def test_a_sqlite_database_url_is_not_warned_about(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/openprofiles.sqlite3"
    install(Settings(data_dir=tmp_path, database_url=url))
    result = CliRunner().invoke(
        main, ["credentials", "list", "--data-dir", str(tmp_path), "--database-url", url]
    )
    assert result.exit_code == 0, result.output
    assert _password_warnings(result.stderr) == []


def _plain_http_warnings(settings: Settings, caplog: pytest.LogCaptureFixture) -> list[str]:
    """What `serve` logs before it serves about speaking plain HTTP."""
    caplog.set_level(logging.WARNING)
    with serving.bind(settings) as listeners:
        list(serving.prepare(settings, listeners, first_run_admin=False))
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == serving.logger.name and "plain HTTP" in r.getMessage()
    ]


def test_serve_on_every_address_without_a_proxy_warns_once_about_plain_http(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(data_dir=tmp_path / "data", host="0.0.0.0", port=free_port())
    assert _plain_http_warnings(settings, caplog) == [
        "Listening on 0.0.0.0, beyond this machine, the server speaks plain HTTP: passwords and "
        "session cookies cross the network unencrypted. Put a TLS-terminating reverse proxy in "
        "front of it and set OPENPROFILES_FORWARDED_ALLOW_IPS to the proxy's address, so that "
        "session cookies are marked Secure and the sign-in throttle sees the clients' addresses "
        "(docs/operations.md, 'In front of the server')."
    ]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_serve_on_loopback_does_not_warn_about_plain_http(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, host: str
) -> None:
    settings = Settings(data_dir=tmp_path / "data", host=host, port=free_port())
    assert _plain_http_warnings(settings, caplog) == []


def test_serve_behind_a_named_proxy_does_not_warn_about_plain_http(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        host="0.0.0.0",
        port=free_port(),
        forwarded_allow_ips="10.0.0.5",
    )
    assert _plain_http_warnings(settings, caplog) == []


def test_serve_command_warns_about_plain_http_on_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Through the command line: --host, and the variable that silences it."""
    monkeypatch.setattr(serving, "run", lambda settings, listeners: None)
    caplog.set_level(logging.WARNING)
    arguments = ["serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path / "data")]
    result = CliRunner().invoke(main, [*arguments, "--port", str(free_port())])
    assert result.exit_code == 0, result.output
    warned = [r for r in caplog.records if "plain HTTP" in r.getMessage()]
    assert len(warned) == 1 and warned[0].levelno == logging.WARNING
    caplog.clear()
    result = CliRunner().invoke(
        main,
        [*arguments, "--port", str(free_port())],
        env={"OPENPROFILES_FORWARDED_ALLOW_IPS": "10.0.0.5"},
    )
    assert result.exit_code == 0, result.output
    assert [r for r in caplog.records if "plain HTTP" in r.getMessage()] == []


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.10", False),
        ("::ffff:127.0.0.1", True),
    ],
)
def test_which_bind_addresses_are_loopback(host: str, loopback: bool) -> None:
    assert serving.is_loopback(host) is loopback
