"""Which Host headers a served application answers (wire.allowed_hosts), and what the others
get: the policy `serving.served_hosts` builds from the bound address and
OPENPROFILES_ALLOWED_HOSTS, applied by the middleware `serving.worker_app` wraps around the
application. The live server's answers: tests/cli/test_serve_answers_its_own_host_names.py."""

from __future__ import annotations

import json
import logging

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from openprofiles.serving import served_hosts
from openprofiles.settings import Settings
from openprofiles.wire.allowed_hosts import HostPolicy, allowed_hosts, host_policy

PORT = 8000


def _loopback(*listed: str, bind_host: str = "127.0.0.1") -> HostPolicy:
    policy = host_policy(listed or None, bound_to_loopback=True, bind_host=bind_host, port=PORT)
    assert policy is not None
    return policy


LOOPBACK_HOSTS = [
    "localhost",
    "localhost:8000",
    "localhost:1234",
    "LOCALHOST:8000",
    "localhost.",
    "127.0.0.1",
    "127.0.0.1:8000",
    "127.3.2.1:9",
    "[::1]",
    "[::1]:8000",
    "[0:0:0:0:0:0:0:1]:8000",
    "::1",
    # Refused before: 127.0.0.1 mapped into IPv6 (serving.is_loopback took it already), an
    # empty port (RFC 3986: the default one) and the optional whitespace around a header's
    # value (RFC 9110).
    "[::ffff:127.0.0.1]",
    "[::ffff:127.0.0.1]:8000",
    "[::FFFF:7f00:2]",
    "localhost:",
    "[::1]:",
    "127.0.0.1:",
    " localhost ",
    "\tlocalhost:8000\t",
    "  [::1]:8000",
]
FOREIGN_HOSTS = [
    "evil.example",
    "evil.example:8000",
    "127.0.0.1.evil.example",
    "localhost.evil.example",
    "evil-localhost",
    "10.0.0.5",
    "[::2]",
    "[::1",
    "localhost::",
    "localhost:http",
    "localhost: 8000",
    "",
    " ",
    "*",
    "[::ffff:10.0.0.5]",
    "127.0.0.1%25lo",
    # Names under localhost (RFC 6761): a browser that asks the network's DNS for one can be
    # rebound (allowed_hosts.LOOPBACK_NAMES).
    "app.localhost",
    "app.localhost:8000",
]


@pytest.mark.parametrize("host", LOOPBACK_HOSTS)
def test_loopback_names_are_answered_with_any_port(host: str) -> None:
    assert _loopback().answers(host.encode())


@pytest.mark.parametrize("host", FOREIGN_HOSTS)
def test_other_names_are_refused_on_loopback(host: str) -> None:
    assert not _loopback().answers(host.encode())


def test_a_host_that_is_not_ascii_is_refused() -> None:
    assert not _loopback().answers("bücher.example".encode())
    assert not _loopback().answers(b"\xff\xfe")


def test_listed_names_are_answered_in_any_spelling() -> None:
    policy = _loopback("profiles.example.com", "[fd00::5]", "10.0.0.5", "proxy.")
    for host in (
        "profiles.example.com",
        "Profiles.Example.COM:443",
        "profiles.example.com.",
        "[fd00:0::5]:8000",
        "10.0.0.5:80",
        "proxy",
        "proxy.:8000",
        " profiles.example.com:443\t",
        "10.0.0.5:",
    ):
        assert policy.answers(host.encode()), host
    assert not policy.answers(b"evil.example")
    assert not policy.answers(b"sub.profiles.example.com")


def test_the_name_the_server_is_bound_to_is_answered() -> None:
    """`serve --host ip6-localhost` printed http://ip6-localhost:PORT: that URL works."""
    policy = _loopback(bind_host="ip6-localhost")
    assert policy.answers(b"ip6-localhost:8000")


def test_a_server_bound_to_the_network_answers_any_host_unless_names_are_listed() -> None:
    assert host_policy(None, bound_to_loopback=False, bind_host="0.0.0.0", port=PORT) is None
    listed = host_policy(
        ("profiles.example.com",), bound_to_loopback=False, bind_host="0.0.0.0", port=PORT
    )
    assert listed is not None
    assert listed.answers(b"profiles.example.com")
    # A health check on the machine itself.
    assert listed.answers(b"127.0.0.1:8000")
    assert not listed.answers(b"evil.example")
    # The address it is bound to: what its start lines print (http://0.0.0.0:8000) works.
    assert listed.answers(b"0.0.0.0:8000")
    assert not listed.hostless
    on_a_lan_address = host_policy(
        ("profiles.example.com",), bound_to_loopback=False, bind_host="192.0.2.7", port=PORT
    )
    assert on_a_lan_address is not None and on_a_lan_address.answers(b"192.0.2.7:8000")
    assert not on_a_lan_address.answers(b"evil.example:8000")


def test_star_answers_any_host() -> None:
    assert host_policy(("*",), bound_to_loopback=True, bind_host="127.0.0.1", port=PORT) is None


def test_served_hosts_reads_the_bound_address_and_the_setting() -> None:
    on_loopback = served_hosts(Settings(host="localhost"))
    assert on_loopback is not None and on_loopback.hostless
    assert not on_loopback.answers(b"evil.example")
    assert served_hosts(Settings(host="0.0.0.0")) is None
    listed = served_hosts(Settings(host="0.0.0.0", allowed_hosts=("profiles.example.com",)))
    assert listed is not None and listed.answers(b"profiles.example.com")


def _app(policy: HostPolicy | None) -> TestClient:
    async def hello(_request: object) -> PlainTextResponse:
        return PlainTextResponse("hello")

    inner = Starlette(routes=[Route("/", hello)])
    return TestClient(allowed_hosts(inner, policy))


def test_a_refused_request_gets_400_naming_the_setting_not_the_host(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="openprofiles.wire.allowed_hosts")
    client = _app(_loopback())
    assert client.get("/", headers={"Host": "localhost:8000"}).text == "hello"
    host = "<script>evil.example</script>"
    for _ in range(3):
        answer = client.get("/", headers={"Host": host})
        assert answer.status_code == 400
        assert answer.headers["content-type"] == "application/json"
        assert answer.headers["x-amzn-errortype"] == "BadRequestException"
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["x-amzn-requestid"]
        assert "OPENPROFILES_ALLOWED_HOSTS" in json.loads(answer.content)["Message"]
        assert "evil" not in answer.text and "script" not in answer.text
    # One line for the three, none naming the Host.
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "OPENPROFILES_ALLOWED_HOSTS" in warning and "evil" not in warning


def test_two_host_headers_are_refused() -> None:
    client = _app(_loopback())
    answer = client.get("/", headers=[("Host", "localhost"), ("Host", "evil.example")])
    assert answer.status_code == 400


def test_no_policy_leaves_the_application_as_it_is() -> None:
    async def app(scope: object, receive: object, send: object) -> None:
        raise AssertionError("not called")

    assert allowed_hosts(app, None) is app
