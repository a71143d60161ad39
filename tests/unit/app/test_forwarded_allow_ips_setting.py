"""OPENPROFILES_FORWARDED_ALLOW_IPS is refused, naming the variable and the entry, unless
uvicorn reads every entry of it as an address or network (or the whole of it as "*").

A newcomer review: OPENPROFILES_FORWARDED_ALLOW_IPS=garbage was accepted and `serve` started.
uvicorn takes an entry it cannot read as an address or a network for a literal name, which no
client of a TCP server has: a typo in the proxy's address trusted no proxy, and every client
behind it counted as the proxy in the sign-in throttle."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from uvicorn.middleware.proxy_headers import _TrustedHosts

from openprofiles.cli import main
from openprofiles.settings import Settings

VARIABLE = "OPENPROFILES_FORWARDED_ALLOW_IPS"

ACCEPTED = [
    "*",
    "10.0.0.5",
    "10.0.0.5,10.0.0.6",
    "10.0.0.5, 192.168.1.0/24",
    "::1",
    "fd00::/8, 127.0.0.1",
    "fe80::1%eth0",
]
# Each with the entry the message names.
REFUSED = [
    ("garbage", "'garbage'"),
    ("10.0.0.5,garbage", "'garbage'"),
    ("proxy.internal", "'proxy.internal'"),
    ("[::1]", "'[::1]'"),
    ("10.0.0.256", "'10.0.0.256'"),
    # Host bits set: not a network to ipaddress, so a name to uvicorn.
    ("10.0.0.5/24", "'10.0.0.5/24' (as a network: 10.0.0.0/24)"),
    ("10.0.0.0/33", "'10.0.0.0/33'"),
    # "*" trusts every client only as the whole value; among others it is a name.
    ("10.0.0.5,*", "may be * (trust every address) only alone"),
    ("10.0.0.5,", "has an empty entry in '10.0.0.5,'"),
]


@pytest.mark.parametrize("value", ACCEPTED)
def test_addresses_networks_and_star_are_read(value: str) -> None:
    settings = Settings.from_env({VARIABLE: value})
    assert settings.forwarded_allow_ips == value
    # As uvicorn reads it: every entry an address or a network, none a name.
    trusted = _TrustedHosts(value)
    assert not trusted.trusted_literals
    assert trusted.always_trust == (value == "*")


def test_a_star_with_spaces_around_it_trusts_every_address() -> None:
    settings = Settings.from_env({VARIABLE: " * "})
    assert settings.forwarded_allow_ips == "*"
    assert _TrustedHosts(settings.forwarded_allow_ips).always_trust


@pytest.mark.parametrize(("value", "named"), REFUSED)
def test_anything_uvicorn_would_take_for_a_name_is_refused(
    value: str, named: str, tmp_path: Path
) -> None:
    # What uvicorn would have done with it: a name no TCP client has.
    assert _TrustedHosts(value).trusted_literals
    with pytest.raises(ValueError) as refused:
        Settings.from_env({VARIABLE: value})
    message = str(refused.value)
    assert message.startswith(f"{VARIABLE} ")
    assert named in message
    assert "IP addresses or networks, comma-separated" in message
    for command in (["serve"], ["credentials", "list"]):
        result = CliRunner().invoke(
            main, [*command, "--data-dir", str(tmp_path)], env={VARIABLE: value}
        )
        assert result.exit_code == 2, result.output
        assert f"Error: {VARIABLE} " in result.output
        assert "Traceback" not in result.output
    # Nothing was started or made.
    assert list(tmp_path.iterdir()) == []
