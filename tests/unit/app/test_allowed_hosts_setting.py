"""OPENPROFILES_ALLOWED_HOSTS: host names or IP addresses, comma-separated, or "*" alone; any
other value stops every command at start, naming the variable and the entry.

A value that names no Host a client sends (a port, a scheme, a wildcard) would have every
request a reverse proxy forwards refused, with nothing said at start: it is refused instead."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from openprofiles import serving
from openprofiles.cli import main
from openprofiles.settings import VARIABLES, Settings

VARIABLE = "OPENPROFILES_ALLOWED_HOSTS"

ACCEPTED = [
    ("profiles.example.com", ("profiles.example.com",)),
    # Case and spaces around entries mean nothing, as in a Host header.
    (" Profiles.Example.com , proxy ", ("profiles.example.com", "proxy")),
    ("10.0.0.5,[FD00::5],fd00::6", ("10.0.0.5", "[fd00::5]", "fd00::6")),
    ("my_service.internal.", ("my_service.internal.",)),
    ("xn--bcher-kva.example", ("xn--bcher-kva.example",)),
    ("*", ("*",)),
    (" * ", ("*",)),
]
# Each with what the message names.
REFUSED = [
    (
        "profiles.example.com:443",
        "'profiles.example.com:443' (without the port: profiles.example.com)",
    ),
    ("[::1]:8000", "'[::1]:8000' (without the port: [::1])"),
    ("https://profiles.example.com", "'https://profiles.example.com'"),
    ("*.example.com", "'*.example.com'"),
    ("profiles.example.com/ui", "'profiles.example.com/ui'"),
    ("bad host", "'bad host'"),
    ("10.0.0.256", "'10.0.0.256'"),
    ("-leading.example", "'-leading.example'"),
    ("x" * 64 + ".example", "'" + "x" * 64 + ".example'"),
    ("[not::an::address]", "'[not::an::address]'"),
    ("bücher.example", "'bücher.example'"),
    ("a.example,*", "may be * (any Host) only alone"),
    ("a.example,,b.example", "has an empty entry in 'a.example,,b.example'"),
]


@pytest.mark.parametrize(("value", "read"), ACCEPTED)
def test_names_addresses_and_star_are_read(value: str, read: tuple[str, ...]) -> None:
    assert Settings.from_env({VARIABLE: value}).allowed_hosts == read


@pytest.mark.parametrize("value", ["", "   "])
def test_unset_or_blank_is_none(value: str) -> None:
    assert Settings.from_env({VARIABLE: value}).allowed_hosts is None
    assert Settings.from_env({}).allowed_hosts is None


def test_the_variable_is_a_known_one() -> None:
    """Not warned about as a misspelling (settings.unknown_variables)."""
    assert "ALLOWED_HOSTS" in VARIABLES


@pytest.mark.parametrize(("value", "named"), REFUSED)
def test_what_names_no_host_is_refused(value: str, named: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError) as refused:
        Settings.from_env({VARIABLE: value})
    message = str(refused.value)
    assert message.startswith(f"{VARIABLE} ")
    assert named in message
    assert "host names or IP addresses, comma-separated, without a scheme or a port" in message


@pytest.mark.parametrize("command", [["serve"], ["credentials", "list"]])
def test_a_refused_value_stops_a_command_at_start(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A server that did start stops at once rather than serve for ever.
    monkeypatch.setattr(serving, "run", lambda settings, listeners: None)
    result = CliRunner().invoke(
        main, [*command, "--data-dir", str(tmp_path)], env={VARIABLE: "profiles.example.com:443"}
    )
    assert result.exit_code == 2, result.output
    assert f"Error: {VARIABLE} " in result.output
    assert not (tmp_path / "keyring.json").exists()


def test_settings_built_directly_are_checked_too() -> None:
    with pytest.raises(ValueError, match=VARIABLE):
        Settings(allowed_hosts=("https://x.example",))
