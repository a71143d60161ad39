"""Two settings a fuzz run found unchecked, each now a usage error (exit status 2) naming the
option or the variable, before the command starts its work:

- OPENPROFILES_KINESIS_ENDPOINT_URL (and the other endpoint variables) that is not an http(s)
  URL with a host: `connectors kinesis` ended in botocore's traceback, where its
  `--endpoint-url` was already refused (cli_support.http_url); the same test now checks both;
- `serve --workers` (and OPENPROFILES_WORKERS) had no maximum: a slip (`--workers 1000`) forked
  processes until the machine or PostgreSQL's connections ran out."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from tests.support.installation import install
from tests.support.ports import bound_loopback_socket

from openprofiles.cli import main
from openprofiles.settings import Settings

ENDPOINT_VARIABLES = [
    "OPENPROFILES_KINESIS_ENDPOINT_URL",
    "OPENPROFILES_KMS_ENDPOINT_URL",
    "OPENPROFILES_SQS_ENDPOINT_URL",
    "OPENPROFILES_S3_ENDPOINT_URL",
]
# What test_cli_refuses_bad_input gives --endpoint-url, refused there.
NOT_ENDPOINTS = ["not a url", "localhost:4566", "ftp://example.com", "http://", "http://host:99999"]
ENDPOINTS = [
    "http://localhost:4566",
    "https://kinesis.eu-west-1.amazonaws.com",
    "http://[::1]:4566/",
]
MOST_WORKERS = 64


def _usage_error(result: Result, name: str) -> str:
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    message = " ".join(result.output.split())
    assert name in message, message
    return message


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    install(Settings(data_dir=tmp_path))
    return tmp_path


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port another socket listens on: a `serve` that got past its checks (the code before
    them did) stops there, at once, rather than serving."""
    with bound_loopback_socket() as sock:
        yield sock.getsockname()[1]


@pytest.mark.parametrize("url", NOT_ENDPOINTS)
def test_kinesis_endpoint_variable_is_checked_as_the_option_is(data_dir: Path, url: str) -> None:
    result = CliRunner().invoke(
        main,
        ["connectors", "kinesis", "--once", "--stream", "s", "--data-dir", str(data_dir)],
        env={"OPENPROFILES_KINESIS_ENDPOINT_URL": url},
    )
    message = _usage_error(
        result, "OPENPROFILES_KINESIS_ENDPOINT_URL must be an http:// or https://"
    )
    assert f"not {url!r}" in message


@pytest.mark.parametrize("variable", ENDPOINT_VARIABLES)
def test_every_endpoint_variable_is_checked(data_dir: Path, variable: str) -> None:
    result = CliRunner().invoke(
        main, ["credentials", "list", "--data-dir", str(data_dir)], env={variable: "not a url"}
    )
    _usage_error(result, f"{variable} must be an http:// or https:// URL with a host")


@pytest.mark.parametrize("variable", ENDPOINT_VARIABLES)
@pytest.mark.parametrize("url", ENDPOINTS)
def test_an_http_endpoint_variable_is_taken(variable: str, url: str) -> None:
    settings = Settings.from_env({variable: url})
    field = variable.removeprefix("OPENPROFILES_").lower()
    assert getattr(settings, field) == url


def test_the_option_and_the_variables_share_one_test() -> None:
    from openprofiles.settings import is_http_url

    assert not any(map(is_http_url, NOT_ENDPOINTS))
    assert all(map(is_http_url, ENDPOINTS))


@pytest.mark.parametrize("workers", [str(MOST_WORKERS + 1), "1000", str(2**63)])
def test_serve_workers_has_a_maximum(tmp_path: Path, busy_port: int, workers: str) -> None:
    result = CliRunner().invoke(
        main,
        ["serve", "--data-dir", str(tmp_path), "--port", str(busy_port), "--workers", workers],
    )
    message = _usage_error(result, "Invalid value for '--workers'")
    assert f"1<=x<={MOST_WORKERS}" in message
    assert not tmp_path.joinpath("keyring.json").exists()


def test_the_workers_variable_has_the_same_maximum(tmp_path: Path, busy_port: int) -> None:
    result = CliRunner().invoke(
        main,
        ["serve", "--data-dir", str(tmp_path), "--port", str(busy_port)],
        env={"OPENPROFILES_WORKERS": str(MOST_WORKERS + 1)},
    )
    _usage_error(result, f"OPENPROFILES_WORKERS must be a whole number from 1 to {MOST_WORKERS}")
    assert Settings.from_env({"OPENPROFILES_WORKERS": str(MOST_WORKERS)}).workers == MOST_WORKERS
    with pytest.raises(ValueError, match="OPENPROFILES_WORKERS must be a whole number from 1"):
        Settings.from_env({"OPENPROFILES_WORKERS": "0"})
