"""Who may scrape GET /metrics (openprofiles.metrics): anyone, or with OPENPROFILES_METRICS_TOKEN
set (Settings.metrics_token) only a request carrying `Authorization: Bearer TOKEN`, as
Prometheus sends it (a scrape_config's `authorization` or `bearer_token_file`;
docs/operations.md). The labels name domains, which a server listening beyond this machine
answered to anyone: `open_to_the_network` is the start-up warning for that case.
"""

from __future__ import annotations

import hmac

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from openprofiles.settings import Settings

# RFC 6750 §3: a 401 names the scheme, and says why when a token was given but is not the one.
_CHALLENGE = 'Bearer realm="openprofiles-metrics"'
_SCHEME = "bearer"


def refusal(request: Request, token: str | None) -> Response | None:
    """The 401 to answer `request` with, or None when it may be served: no token is set, or the
    request's bearer token is `token`."""
    if token is None:
        return None
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != _SCHEME or not given.strip():
        return _unauthorized(_CHALLENGE)
    # Compared in constant time: how long a wrong token took must not tell how much of it was
    # right. Headers are Latin-1 (Starlette's reading); the token is ASCII (Settings).
    if not hmac.compare_digest(given.strip().encode("latin-1"), token.encode("ascii")):
        return _unauthorized(f'{_CHALLENGE}, error="invalid_token"')
    return None


def _unauthorized(challenge: str) -> Response:
    # Says what the caller must send, not the server's configuration (which variable holds
    # the token): that is for the operator, in docs/operations.md and serve's warning.
    return PlainTextResponse(
        "A bearer token is required: GET /metrics with Authorization: Bearer TOKEN.\n",
        status_code=401,
        headers={"WWW-Authenticate": challenge},
    )


def open_to_the_network(settings: Settings, *, loopback: bool) -> str | None:
    """A warning when GET /metrics is served to anyone beyond this machine: metrics on, no
    token, and a server listening on an address that is not loopback (`loopback`, as
    serving.is_loopback reads the host). None otherwise."""
    if not settings.metrics or settings.metrics_token is not None or loopback:
        return None
    return (
        f"Listening on {settings.host}, beyond this machine, GET /metrics answers anyone who "
        "reaches the server, and its labels name the domains. "
        "Set OPENPROFILES_METRICS_TOKEN to a secret that scrapes must send as a bearer token, "
        "keep /metrics to the monitoring network at a proxy, or set OPENPROFILES_METRICS=off "
        "(docs/operations.md, 'In front of the server')."
    )
