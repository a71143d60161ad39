"""The `openprofiles` commands answer bad input with a usage error naming the option (exit 2), or
with what is wrong (exit 1): never a traceback. A review's fuzzing found these crashing:

- an argument that is not UTF-8 (Python gives its bytes as lone surrogates) reaching the store
  (`dlq list --domain $'\\xff'`, `users delete $'\\xff'`, `credentials delete $'\\xff'`);
- numbers past what the databases or the standard library take (`dlq list --limit 2**63-1`,
  `ingest --batch-size 10**20`, `flows watch --every inf|1e308`), and `--every nan`, which
  slipped past its minimum and watched in a busy loop;
- `connectors kinesis --endpoint-url 'not a url'`, refused by botocore with a traceback;
- and `ingest objects` on a file that is not UTF-8 (a UTF-16 export) exited 0, dead-lettering
  garbage "lines", where `ingest contact-records` refuses it whole."""

from __future__ import annotations

import codecs
import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result
from tests.unit.ingest.conftest import DOMAIN, crm_type, make_domain, put_type

from openprofiles.cli import main
from openprofiles.context import Services
from openprofiles.dlq import service as dlq_service

# The bytes 0xFF 0xFE of an argument, as Python gives them (PEP 383).
NOT_UTF8 = b"\xff\xfe".decode("utf-8", "surrogateescape")
WAIT_SECONDS = 60


def _storage(services: Services) -> list[str]:
    storage = ["--data-dir", str(services.settings.data_dir)]
    if services.settings.database_url:
        storage += ["--database-url", services.settings.database_url]
    return storage


def _run(services: Services, *args: str) -> Result:
    return CliRunner().invoke(main, [*args, *_storage(services)])


def _usage_error(result: Result, name: str) -> None:
    """A click usage error (exit 2) naming `name`, not a crash."""
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{name}'" in result.output, result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "name"),
    [
        (["dlq", "list", "--domain", NOT_UTF8], "--domain"),
        (["dlq", "list", "--domain", DOMAIN, "--after", NOT_UTF8], "--after"),
        (["dlq", "show", "--domain", DOMAIN, NOT_UTF8], "MESSAGE_ID"),
        (["dlq", "retry", "--domain", DOMAIN, "ok", NOT_UTF8], "[MESSAGE_IDS]..."),
        (["users", "delete", NOT_UTF8, "--yes"], "USERNAME"),
        (["credentials", "delete", NOT_UTF8], "ACCESS_KEY_ID"),
        (["keys", "disable", NOT_UTF8], "KEY"),
        (["flows", "run", "--domain", DOMAIN, NOT_UTF8], "NAME"),
    ],
)
def test_a_name_that_is_not_utf8_is_a_usage_error(
    services: Services, args: list[str], name: str
) -> None:
    make_domain(services)
    _usage_error(_run(services, *args), name)


def test_a_not_utf8_argument_from_a_real_command_line(services: Services) -> None:
    """The bytes as a shell passes them, decoded by Python itself."""
    make_domain(services)
    argv = [sys.executable, "-m", "openprofiles.cli", "dlq", "list", *_storage(services)]
    done = subprocess.run(
        [*argv, "--domain", b"\xff\xfe"], capture_output=True, timeout=WAIT_SECONDS, check=False
    )
    err = done.stderr.decode("utf-8", "replace")
    assert done.returncode == 2, err
    assert "Invalid value for '--domain'" in err
    assert "not valid UTF-8" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("limit", [str(2**63 - 1), str(2**64), "1000001"])
def test_a_limit_past_its_maximum_is_a_usage_error(services: Services, limit: str) -> None:
    make_domain(services)
    _usage_error(_run(services, "dlq", "list", "--domain", DOMAIN, "--limit", limit), "--limit")


@pytest.mark.parametrize("value", ["", " ", "\t"])
@pytest.mark.parametrize(
    "command",
    [
        ["dlq", "purge", "--domain", DOMAIN],
        ["instances", "purge-unrouted"],
        ["dlq", "purge", "--domain", DOMAIN, "--dry-run"],
    ],
)
def test_an_empty_matching_value_is_a_usage_error(
    services: Services, command: list[str], value: str
) -> None:
    """It matched no record, and the command said none was found (exit 0)."""
    make_domain(services)
    _usage_error(_run(services, *command, "--matching", value, "--yes"), "--matching")


def _records_file(tmp_path: Path) -> Path:
    path = tmp_path / "records.jsonl"
    path.write_text(json.dumps({"id": "1", "email": "a@x.com"}) + "\n")
    return path


@pytest.mark.parametrize(
    "command", [["ingest", "objects"], ["ingest"], ["ingest", "contact-records"]]
)
def test_a_batch_size_past_its_maximum_is_a_usage_error(
    services: Services, tmp_path: Path, command: list[str]
) -> None:
    make_domain(services)
    put_type(services, "Crm", crm_type())
    target = (
        [] if command[-1] == "contact-records" else ["--domain", DOMAIN, "--object-type", "Crm"]
    )
    path = str(_records_file(tmp_path))
    result = _run(services, *command, path, *target, "--batch-size", str(10**20))
    _usage_error(result, "--batch-size")


@pytest.mark.parametrize("every", ["inf", "1e308", "nan", "-nan"])
def test_flows_watch_every_must_be_a_finite_wait(services: Services, every: str) -> None:
    """In a process of its own, with a timeout: the old code watched `--every nan` forever."""
    argv = [sys.executable, "-m", "openprofiles.cli", "flows", "watch", *_storage(services)]
    done = subprocess.run(
        [*argv, "--every", every], capture_output=True, text=True, timeout=WAIT_SECONDS, check=False
    )
    assert done.returncode == 2, done.stderr
    assert "Invalid value for '--every'" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "url", ["not a url", "localhost:4566", "ftp://example.com", "http://", "http://host:99999"]
)
def test_kinesis_endpoint_url_must_be_an_http_url(services: Services, url: str) -> None:
    result = _run(
        services, "connectors", "kinesis", "--once", "--stream", "s", "--endpoint-url", url
    )
    _usage_error(result, "--endpoint-url")


@pytest.mark.parametrize(
    "url",
    ["http://localhost:4566", "https://kinesis.eu-west-1.amazonaws.com", "http://[::1]:4566/"],
)
def test_an_http_endpoint_url_is_taken(url: str) -> None:
    from openprofiles.cli_support import http_url

    @click.command()
    @click.option("--endpoint-url", callback=http_url)
    def show(endpoint_url: str) -> None:
        click.echo(endpoint_url)

    result = CliRunner().invoke(show, ["--endpoint-url", url])
    assert result.exit_code == 0, result.output
    assert result.output == f"{url}\n"


NOT_UTF8_FILES = {
    "utf16.jsonl": codecs.BOM_UTF16_LE + '{"id": "1", "email": "a@x.com"}\n'.encode("utf-16-le"),
    "binary.jsonl": bytes(range(256)) * 4,
    "latin1.jsonl": '{"id": "1", "name": "Zoë"}\n{"id": "2"}\n'.encode("latin-1"),
}


@pytest.mark.parametrize("command", [["ingest", "objects"], ["ingest"]])
@pytest.mark.parametrize("name", sorted(NOT_UTF8_FILES))
def test_ingest_objects_refuses_a_file_that_is_not_utf8(
    services: Services, tmp_path: Path, command: list[str], name: str
) -> None:
    make_domain(services)
    put_type(services, "Crm", crm_type())
    path = tmp_path / name
    path.write_bytes(NOT_UTF8_FILES[name])

    result = _run(services, *command, str(path), "--domain", DOMAIN, "--object-type", "Crm")

    assert result.exit_code == 1, result.output
    assert f"{path} is not UTF-8 text; nothing was loaded." in result.output
    with services.read() as tx:
        assert dlq_service.count(tx, domain_name=DOMAIN) == 0
