"""The `openprofiles` command line on a real data dir and database."""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from click.testing import CliRunner
from tests.support.concurrency import race
from tests.support.installation import install
from tests.support.ports import free_port
from tests.support.serve import (
    api_client,
    first_run_key,
    parent_of,
    serve_first_run,
    wait_for_workers,
)

from openprofiles.cli import main
from openprofiles.settings import Settings


def _run(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_credentials_create_and_list(settings):
    install(settings)
    common = ["--data-dir", str(settings.data_dir)]
    if settings.database_url:
        common += ["--database-url", settings.database_url]
    issued = json.loads(_run("credentials", "create", "--role", "agent", "--json", *common))
    assert issued["Role"] == "agent"
    assert issued["AccessKeyId"].startswith("OP") and len(issued["AccessKeyId"]) == 20
    assert len(issued["SecretAccessKey"]) >= 40
    listed = json.loads(_run("credentials", "list", "--json", *common))
    assert [c["AccessKeyId"] for c in listed] == [issued["AccessKeyId"]]
    assert issued["SecretAccessKey"] not in json.dumps(listed)


def test_credentials_create_refuses_an_unknown_role(tmp_path):
    result = CliRunner().invoke(
        main, ["credentials", "create", "--role", "root", "--data-dir", str(tmp_path)]
    )
    assert result.exit_code != 0
    assert "root" in result.output


def test_a_setting_that_is_not_valid_stops_the_command_with_its_name(tmp_path):
    for variable, value, message in (
        ("OPENPROFILES_WORKERS", "two", "OPENPROFILES_WORKERS must be a whole number, not 'two'"),
        ("OPENPROFILES_SQLITE_CACHE_MIB", "0", "OPENPROFILES_SQLITE_CACHE_MIB must be at least 1"),
        # The socket layer took 99999 modulo 65536 and listened on 34463 (an audit).
        ("OPENPROFILES_PORT", "99999", "OPENPROFILES_PORT must be between 1 and 65535"),
        ("OPENPROFILES_WORKERS", "0", "OPENPROFILES_WORKERS must be a whole number from 1 to 64"),
        # Accepted silently, then numbers without a country code were kept as written.
        (
            "OPENPROFILES_DEFAULT_PHONE_REGION",
            "XX",
            "OPENPROFILES_DEFAULT_PHONE_REGION must be a two-letter region code that "
            "libphonenumber knows, such as US or GB, not 'XX'",
        ),
    ):
        result = CliRunner().invoke(
            main, ["credentials", "list", "--data-dir", str(tmp_path)], env={variable: value}
        )
        assert result.exit_code == 2, result.output
        assert message in result.output
        assert "Traceback" not in result.output


def test_the_default_phone_region_is_read_in_any_case():
    settings = Settings.from_env({"OPENPROFILES_DEFAULT_PHONE_REGION": "gb"})
    assert settings.default_phone_region == "GB"
    assert Settings.from_env({}).default_phone_region == "US"


def test_serve_refuses_a_port_outside_the_range(tmp_path):
    result = CliRunner().invoke(main, ["serve", "--port", "99999", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2 and "99999 is not in the range 1<=x<=65535" in result.output


def test_keys_create_prints_a_usable_identifier(tmp_path):
    data_dir = tmp_path / "data"
    install(Settings(data_dir=data_dir))
    out = json.loads(
        _run("keys", "create", "--alias", "billing", "--json", "--data-dir", str(data_dir))
    )
    assert out["Arn"].startswith("arn:openprofiles:kms:")
    assert out["Alias"] == "billing"
    keyring = data_dir / "keyring.json"
    assert stat.S_IMODE(keyring.stat().st_mode) == 0o600
    # The identifier is accepted as a DefaultEncryptionKey.
    from openprofiles.app import build_services

    services = build_services(Settings(data_dir=data_dir))
    wrapped = services.keys.new_domain_key("d", out["Arn"])
    assert wrapped.key_id == out["Arn"]
    duplicate = CliRunner().invoke(
        main, ["keys", "create", "--alias", "billing", "--data-dir", str(data_dir)]
    )
    assert duplicate.exit_code != 0
    services.database.dispose()


def test_keys_disable_and_enable_as_the_error_messages_say(tmp_path):
    """Messages about a disabled key say to run `openprofiles keys enable`; the command did
    not exist (an audit)."""
    data_dir = str(install(Settings(data_dir=tmp_path / "data")).data_dir)
    # The ARN, then (on stderr) the reminder to back up keyring.json.
    arn = _run("keys", "create", "--alias", "billing", "--data-dir", data_dir).splitlines()[0]

    def enabled() -> bool:
        [key] = [
            k
            for k in json.loads(_run("keys", "list", "--json", "--data-dir", data_dir))
            if k["Alias"] == "billing"
        ]
        return bool(key["Enabled"])

    assert "disabled" in _run("keys", "disable", "alias/billing", "--data-dir", data_dir)
    assert not enabled()
    assert "enabled" in _run("keys", "enable", arn, "--data-dir", data_dir)
    assert enabled()
    unknown = CliRunner().invoke(main, ["keys", "enable", "nosuch", "--data-dir", data_dir])
    assert unknown.exit_code == 1 and "There is no key nosuch" in unknown.output


def test_a_disabled_default_key_stops_a_start_with_its_reason(tmp_path):
    """The server's own secrets (credential secrets, sessions, page tokens) are derived from
    the default local key, never from a KMS key, once per process when it starts: a process
    started while that key is disabled refuses with what to do, not with a traceback."""
    data_dir = str(install(Settings(data_dir=tmp_path / "data")).data_dir)
    _run("credentials", "create", "--role", "admin", "--data-dir", data_dir)
    # Not without --force: it stops everything, not only the domains under it.
    refused = CliRunner().invoke(
        main, ["keys", "disable", "alias/openprofiles-default", "--data-dir", data_dir]
    )
    assert refused.exit_code == 1 and "Give --force to disable it anyway" in refused.output
    # Refused, it changed nothing: the server's secrets still open.
    _run("credentials", "list", "--data-dir", data_dir)
    _run("keys", "disable", "alias/openprofiles-default", "--force", "--data-dir", data_dir)
    result = CliRunner().invoke(main, ["credentials", "list", "--data-dir", data_dir])
    assert result.exit_code == 1, result.output
    assert "The default local key" in result.output and "is disabled" in result.output
    assert "openprofiles keys enable" in result.output and "Traceback" not in result.output


def test_serve_starts_with_first_run_admin_and_answers_health(tmp_path):
    port = free_port()
    data_dir = tmp_path / "data"
    process = serve_first_run(data_dir, port)
    try:
        lines = []
        assert process.stdout is not None
        # Read the server's own output until it says it is accepting connections.
        for line in process.stdout:
            lines.append(line)
            if "OpenProfiles listening on" in line:
                break
        output = "".join(lines)
        assert f"http://127.0.0.1:{port}" in output
        credentials = Path(data_dir / "credentials")
        assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
        assert "aws_access_key_id" in credentials.read_text()
        response = httpx.get(f"http://127.0.0.1:{port}/health", timeout=10)
        assert response.status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_serve_with_two_workers_shares_the_port_and_the_database(tmp_path):
    """`serve --workers 2` starts two server processes on one port; writes from both land in the
    one SQLite database without 'database is locked', and both see each other's writes."""
    port = free_port()
    data_dir = tmp_path / "data"
    process = serve_first_run(data_dir, port, "--workers", "2")
    try:
        wait_for_workers(process, 2)
        workers = [
            pid
            for pid in os.listdir("/proc")
            if pid.isdigit() and parent_of(int(pid)) == process.pid
        ]
        assert len(workers) >= 2

        key = first_run_key(data_dir)

        def api():
            return api_client(port, key)

        api().create_domain(DomainName="shared", DefaultExpirationDays=30)

        def writer(n: int) -> Callable[[], list[str]]:
            client = api()
            return lambda: [
                client.create_profile(
                    DomainName="shared", FirstName=f"W{n}", PhoneNumber=f"+1415555{n:02d}{i:02d}"
                )["ProfileId"]
                for i in range(10)
            ]

        created = race([writer(n) for n in range(8)])
        assert len(set(created)) == 80
        client = api()
        for n in range(8):
            found = client.search_profiles(
                DomainName="shared", KeyName="_phone", Values=[f"+1415555{n:02d}07"]
            )["Items"]
            assert [p["FirstName"] for p in found] == [f"W{n}"]
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_workers_stop_when_their_supervisor_is_killed(tmp_path):
    """`kill -9` of the supervising process alone (outside a service manager, which ends the
    whole group) left its workers serving the port, unsupervised, and a new server could not
    bind it (a stress review). The workers now notice and stop, and the port is free again."""
    port = free_port()
    process = serve_first_run(tmp_path / "data", port, "--workers", "2")
    try:
        wait_for_workers(process, 2)
        workers = [
            int(pid)
            for pid in os.listdir("/proc")
            if pid.isdigit()
            and parent_of(int(pid)) == process.pid
            and b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]
        assert len(workers) == 2
    finally:
        process.kill()
        process.wait(timeout=20)
    # Waiting for the workers' own exit (an event), bounded.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(_running(pid) for pid in workers):
        time.sleep(0.1)
    assert [pid for pid in workers if _running(pid)] == []
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))


def _running(pid: int) -> bool:
    """Whether the process is there and not a zombie waiting to be reaped (by an init that may
    never reap it, in a container)."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat_line.rsplit(")", 1)[1].split()[0] != "Z"


def test_a_database_without_its_keyring_is_refused_not_resealed(tmp_path):
    """A second server on a shared database, or a copy without keyring.json, used to mint a
    new keyring and then answer 500 to every request (an audit)."""
    runner = CliRunner()
    install(Settings(data_dir=tmp_path))
    made = runner.invoke(
        main, ["credentials", "create", "--role", "admin", "--data-dir", str(tmp_path)]
    )
    assert made.exit_code == 0, made.output
    (tmp_path / "keyring.json").rename(tmp_path / "keyring.json.away")

    refused = runner.invoke(main, ["credentials", "list", "--data-dir", str(tmp_path)])

    assert refused.exit_code == 1
    assert "keyring.json does not exist, but the database" in refused.output
    assert not (tmp_path / "keyring.json").exists()
    (tmp_path / "keyring.json.away").rename(tmp_path / "keyring.json")
    assert runner.invoke(main, ["credentials", "list", "--data-dir", str(tmp_path)]).exit_code == 0


def test_serve_says_when_its_port_is_taken_before_saying_it_listens(tmp_path):
    """It printed "OpenProfiles listening on ..." and then "OSError: (message withheld)"."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(
            main, ["serve", "--port", str(port), "--data-dir", str(tmp_path)]
        )
    assert result.exit_code == 1
    assert f"Cannot listen on 127.0.0.1:{port}: Address already in use." in result.output
    assert "listening" not in result.output


def _started(process: subprocess.Popen[str]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        if "OpenProfiles listening on" in line:
            return
    raise AssertionError("the server did not start")


def test_serve_trusts_no_forwarded_address_unless_told(tmp_path):
    """uvicorn trusts X-Forwarded-For from 127.0.0.1 by default, where this server's clients
    connect from: a guesser could name a new address for each failed sign-in and never reach
    the per-address limit."""
    from openprofiles.users import throttle

    port = free_port()
    process = serve_first_run(tmp_path / "data", port)
    try:
        _started(process)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            statuses = []
            for n in range(throttle.ADDRESS_LIMIT + 1):
                form = client.get("/ui/sign-in").text
                token = re.search(r'name="csrf_token" value="([^"]+)"', form)
                assert token is not None
                answer = client.post(
                    "/ui/sign-in",
                    data={
                        "csrf_token": token.group(1),
                        "username": f"guess-{n}",
                        "password": "not the password",
                    },
                    headers={"X-Forwarded-For": f"198.51.100.{n}"},
                )
                statuses.append(answer.status_code)
    finally:
        process.terminate()
        process.wait(timeout=30)
    # Every failure counted against the one real address: the last attempt is refused.
    assert statuses == [401] * throttle.ADDRESS_LIMIT + [429]
