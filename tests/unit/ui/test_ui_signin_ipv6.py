"""The sign-in throttle counts an IPv6 client by its /64 (users.throttle.client_key), an IPv4
client by its address. It used to count every IPv6 address apart, and one client, who holds a
whole /64, had 2^64 budgets of guesses: a new address for each few guesses went unhindered."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient
from tests.unit.ui.test_ui_sessions import PASSWORD, csrf_of

from openprofiles.app import create_app
from openprofiles.context import Services
from openprofiles.errors import Throttling
from openprofiles.settings import Settings
from openprofiles.users import service as users
from openprofiles.users import throttle

WRONG = "not the password"
# One client's /64, and addresses in it as SLAAC and privacy extensions pick them.
ONE_CLIENT = [f"2001:db8:77:1:{n:x}:{n * 7:x}:ab:{n + 1:x}" for n in range(1, 60)]
NEIGHBOUR = "2001:db8:77:2::1"  # the next /64: another client


@pytest.fixture
def app(settings: Settings) -> Iterator[Starlette]:
    app = create_app(settings)
    with app.state.services.write() as tx:
        users.create_user(tx, username="ana", password=PASSWORD, role="agent")
    yield app
    app.state.services.database.dispose()


def page_attempt(app: Starlette, address: str, username: str, password: str) -> int:
    """A sign-in through the page from the client `address`; its status."""
    client = TestClient(app, client=(address, 50000), follow_redirects=False)
    page = client.get("/ui/sign-in")
    data = {"username": username, "password": password, "csrf_token": csrf_of(page.text)}
    return client.post("/ui/sign-in", data=data).status_code


def test_guesses_from_many_addresses_of_one_ipv6_64_share_one_budget(app: Starlette) -> None:
    for address in ONE_CLIENT[: throttle.USER_LIMIT]:
        assert page_attempt(app, address, "ana", WRONG) == 401
    # A fresh address of the same /64 is the same client: ana is locked from it.
    assert page_attempt(app, ONE_CLIENT[throttle.USER_LIMIT], "ana", PASSWORD) == 429
    # Another /64 is another client: ana signs in from there.
    assert page_attempt(app, NEIGHBOUR, "ana", PASSWORD) == 303


def attempt(services: Services, address: str, username: str) -> None:
    with services.write() as tx:
        assert users.sign_in(tx, username=username, password=WRONG, address=address) is None


def test_an_ipv6_64_reaches_the_address_limit_and_ipv4_stays_per_address(
    services: Services,
) -> None:
    # Other names each time: only the address's own count grows.
    for n in range(throttle.ADDRESS_LIMIT):
        attempt(services, ONE_CLIENT[n], f"name{n}")
    with services.write() as tx, pytest.raises(Throttling):
        users.sign_in(tx, username="other", password=WRONG, address=ONE_CLIENT[-1])
    attempt(services, NEIGHBOUR, "other")
    # The same address written as an IPv4-mapped IPv6 one, and IPv4 neighbours, are apart.
    for n in range(throttle.ADDRESS_LIMIT):
        attempt(services, "198.51.100.7", f"name{n}")
    with services.write() as tx, pytest.raises(Throttling):
        users.sign_in(tx, username="other", password=WRONG, address="::ffff:198.51.100.7")
    attempt(services, "198.51.100.8", "other")


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("198.51.100.7", "198.51.100.7"),
        ("2001:db8:77:1:aaaa:bbbb:cccc:dddd", "2001:db8:77:1::/64"),
        ("2001:DB8:77:1::1", "2001:db8:77:1::/64"),
        ("::ffff:198.51.100.7", "198.51.100.7"),
        ("fe80::1%eth0", "fe80::/64"),
        ("testclient", "testclient"),
    ],
)
def test_the_client_key(address: str, key: str) -> None:
    assert throttle.client_key(address) == key
