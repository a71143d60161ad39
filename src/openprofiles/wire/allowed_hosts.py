"""Answer only requests whose Host header names this server: the defence against DNS rebinding.

A server bound to 127.0.0.1 is out of the network's reach, but not out of a browser's on the
same machine: a page the operator (or an agent) opens at evil.example can make its own name
resolve to 127.0.0.1 once loaded, and its script then calls "its own" origin, which is this
server, with the browser's same-origin rules satisfied. It could read what needs no
credential (/metrics without a token names every domain) and post sign-ins, which the sign-in
throttle counts against 127.0.0.1, locking the administrator out of their own address. Every
such request carries `Host: evil.example`: the browser writes the name it resolved. So, as
Jupyter (local_hostnames) and Django (ALLOWED_HOSTS) do, a server bound to loopback answers
only a Host that names a loopback host (localhost, 127.x.y.z, [::1], [::ffff:127.0.0.1]; not
app.localhost, see LOOPBACK_NAMES) or one the operator lists in OPENPROFILES_ALLOWED_HOSTS (a
reverse proxy on the same host that forwards `Host: profiles.example.com` must list it); any
port, an empty one included. A server bound to the network answers any Host unless that list
is set, and then only those names (and loopback ones, so a local health check keeps working).
Any other request gets 400 in the API's error format, naming the setting, never the Host it
was sent; each is counted in /metrics (`openprofiles_host_refusals_total`), and a warning
logged once a minute at most.

A request without a Host header (HTTP/1.0; HTTP/1.1 requires one, and uvicorn passes on
what it gets) is answered when the server is bound to loopback: no browser sends one, so it
is no rebinding, and a local tool speaking HTTP/1.0 keeps working. Bound to the network with
a list, it is refused: it names none of the hosts the operator allowed.

Applied by `serving.worker_app`, to what `openprofiles serve` runs, rather than in
`app.create_app`: which hosts are this server's depends on the address it is bound to, which
only the serving layer knows (`serving.is_loopback`), and an application built in a test
(Starlette's TestClient sends `Host: testserver`) or embedded elsewhere is not reached by a
browser through a rebound name. It runs on every request, before everything else: one scan of
the headers and a set lookup, the port included, for the usual Host; a Host not in the set
costs an address parse, mostly on the way to a refusal.
"""

from __future__ import annotations

import ipaddress
import logging
import time
import uuid

from starlette.types import ASGIApp, Receive, Scope, Send

from openprofiles.errors import BadRequest
from openprofiles.metrics.events import count_host_refusal
from openprofiles.wire.errors import render_error
from openprofiles.wire.nosniff import NOSNIFF

logger = logging.getLogger(__name__)

VARIABLE = "OPENPROFILES_ALLOWED_HOSTS"
# The names every host list holds: the loopback host's usual spellings. Other loopback
# addresses (127.0.0.2, [0:0:0:0:0:0:0:1], [::ffff:127.0.0.1]) are recognised by
# `_loopback_address`.
#
# Not the names under localhost (app.localhost, RFC 6761): Chrome and Firefox resolve them to
# loopback themselves, but RFC 6761 only lets a resolver do so, and a browser that asks the
# system's resolver (Safari; a name not in /etc/hosts) gets the network's DNS answer, which on
# a hostile network (its DHCP hands out the resolver) can be the attacker's address first and
# 127.0.0.1 next: DNS rebinding under a name this list would then answer. "localhost" itself
# never reaches the network's DNS (the hosts file answers it). A name under localhost that an
# operator uses is listed in OPENPROFILES_ALLOWED_HOSTS.
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]", "::1")
REFUSED_MESSAGE = (
    "The request's Host header names a host this server does not answer for. To serve it "
    f"under that name (behind a reverse proxy, say), list the name in {VARIABLE}."
)
# At most one warning about refused requests in this many seconds: a rebinding page may send
# thousands, and each line would say the same.
WARNING_SECONDS = 60


class HostPolicy:
    """The Host header values a server answers: `names` (lower case, IPv6 addresses in
    brackets, each also with `port`), loopback addresses in any spelling, and a request
    without a Host header if `hostless`."""

    def __init__(self, names: frozenset[str], *, port: int, hostless: bool) -> None:
        with_port = {f"{name}:{port}" for name in names}
        self._answered = frozenset(name.encode("ascii") for name in names | with_port)
        self.hostless = hostless

    def answers(self, host: bytes) -> bool:
        """Whether a request whose Host header is `host` is answered."""
        host = host.lower()
        if host in self._answered:
            return True
        # Whitespace around the value is no part of it (RFC 9110 5.5, optional whitespace),
        # should the server pass it on.
        host = host.strip(b" \t")
        name, _, port = host.rpartition(b":")
        # "localhost:8080", "[::1]:8080", and "localhost:" (an empty port is the default one,
        # RFC 3986 3.2.3); but "::1" is an address, not "::" and a port.
        if not (
            name and (port.isdigit() or not port) and (b":" not in name or name.endswith(b"]"))
        ):
            name = host
        if name in self._answered:
            return True
        # Another spelling of an address (127.0.0.2, [::0001], a name's trailing dot).
        return self._canonical(name) in self._answered or _loopback_address(name)

    @staticmethod
    def _canonical(name: bytes) -> bytes:
        try:
            return canonical_host(name.decode("ascii")).encode("ascii")
        except UnicodeError:
            return b""


def canonical_host(name: str) -> str:
    """`name` (a host name or IP address, as OPENPROFILES_ALLOWED_HOSTS lists it or a Host
    header names it) as a HostPolicy holds it: lower case, an IP address in its standard
    form, an IPv6 one in brackets, a name without the trailing dot of a fully qualified one."""
    name = name.lower().removesuffix(".")
    try:
        address = ipaddress.ip_address(_unbracketed(name))
    except ValueError:
        return name
    return f"[{address.compressed}]" if address.version == 6 else address.compressed


def _loopback_address(name: bytes) -> bool:
    try:
        return is_loopback_address(_unbracketed(name.decode("ascii")))
    except UnicodeDecodeError:
        return False


def is_loopback_address(address: str) -> bool:
    """Whether `address` (an IP address; IPv6 without brackets, with its zone or not: "::1%lo")
    is a loopback one: 127.0.0.0/8, ::1, or 127.x.y.z mapped into IPv6 (::ffff:127.0.0.1,
    which Python's `is_loopback` does not count before 3.13). The one test of both the Host
    check and `serving.is_loopback` (the address a server is bound to). An IPv4 address with
    a zone is none (ipaddress refuses it): no Host a browser sends has one."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def _unbracketed(name: str) -> str:
    """An IPv6 address as a URL writes it, [::1], without its brackets; anything else as is."""
    return name[1:-1] if name.startswith("[") and name.endswith("]") else name


def host_policy(
    listed: tuple[str, ...] | None, *, bound_to_loopback: bool, bind_host: str, port: int
) -> HostPolicy | None:
    """What a server bound to `bind_host`:`port` answers, given OPENPROFILES_ALLOWED_HOSTS
    (`listed`, None when unset); None when it answers any Host. Bound to loopback, its own
    loopback names and the listed ones; bound to the network, any Host unless names are
    listed, and then those and the loopback names. Either way also `bind_host`, the name or
    address its start lines print in its URLs (`serve --host localhost.localdomain`, `--host
    0.0.0.0` with a list): a rebinding page's Host is its own name, never the one the operator
    gave --host, so answering it lets in nothing a rebinding could send."""
    if listed == ("*",) or (listed is None and not bound_to_loopback):
        return None
    names = {canonical_host(name) for name in (*LOOPBACK_NAMES, *(listed or ()))}
    if bind_host.isascii():
        names.add(canonical_host(bind_host))
    return HostPolicy(frozenset(names), port=port, hostless=bound_to_loopback)


def allowed_hosts(app: ASGIApp, policy: HostPolicy | None) -> ASGIApp:
    """`app`, answering a request whose Host `policy` does not answer with 400 itself (module
    docstring); `app` unchanged when `policy` is None (any Host)."""
    if policy is None:
        return app
    warned_at: float | None = None

    async def only_allowed_hosts(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal warned_at
        if scope["type"] not in ("http", "websocket"):
            await app(scope, receive, send)
            return
        hosts = [value for name, value in scope["headers"] if name == b"host"]
        # Two Host headers: which one the application would read is not for us to guess.
        if policy.answers(hosts[0]) if len(hosts) == 1 else (not hosts and policy.hostless):
            await app(scope, receive, send)
            return
        # Each counted (/metrics), as the warning below is written once a minute at most.
        count_host_refusal()
        now = time.monotonic()
        if warned_at is None or now - warned_at >= WARNING_SECONDS:
            warned_at = now
            # Never the Host itself: anyone may write anything there.
            logger.warning(
                "Refused a request whose Host header names no host this server answers for "
                "(a DNS rebinding attempt, or a reverse proxy's name missing from %s); the "
                "next ones are not logged for %d seconds.",
                VARIABLE,
                WARNING_SECONDS,
            )
        await _refuse(scope, send)

    return only_allowed_hosts


async def _refuse(scope: Scope, send: Send) -> None:
    if scope["type"] == "websocket":
        # Closed before it is accepted: uvicorn answers the handshake 403.
        await send({"type": "websocket.close", "code": 1008})
        return
    status, headers, body = render_error(BadRequest(REFUSED_MESSAGE), str(uuid.uuid4()))
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    raw += [(b"content-length", str(len(body)).encode("ascii")), NOSNIFF]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
