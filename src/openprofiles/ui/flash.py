"""One-shot confirmations ("Profile saved.", "Contact ... is now linked", "Your password has
been changed.", "Deleted the integration ...", "Purged 3 records.") shown on the page a change
redirects to (POST, redirect, GET), with what they say of the change (`details`: the integration
deleted, the records retried or purged).

They used to ride in the address (`?saved=1`, `&linked=1`, `?changed=1`, `?deleted=`,
`?purged=`), so a link anyone could send showed "Saved", or "Deleted the integration" with any
text, for a change that never happened. Now the POST that made the change leaves a
short-lived cookie that only the next view of that page, in that session, reads and clears: its
value is sealed (services.tokens) to the session (its CSRF token, which no other session has)
and to the page's path, so it cannot be written by hand nor carried from another session or to
another page, and it is shown once, not again on reload, from the history or from a link.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from openprofiles.errors import BadRequest
from openprofiles.ui.web import UI, clear_cookie, cookie_value, set_cookie
from openprofiles.users.models import WebSession

# The start of the cookie's name (UI.cookie: each installation's has a suffix of its own).
FLASH_COOKIE = "op_flash"
# Long enough for the browser to follow the redirect; a confirmation not shown by then is moot.
FLASH_SECONDS = 60
SAVED = "saved"
LINKED = "linked"
PASSWORD_CHANGED = "password"
# An integration deleted (details: its "uri").
INTEGRATION_DELETED = "integration-deleted"
# Dead letters retried or purged (details: the counts the dead-letter queue's page shows).
DEAD_LETTERS = "dead-letters"
# A dead letter retried that failed again (on its own page).
RETRY_FAILED = "retry-failed"
_SCOPE = "ui/flash"


def _scope(session: WebSession, page: str) -> str:
    return "\x00".join((_SCOPE, session.csrf_token, page))


def confirm(
    ui: UI,
    request: Request,
    response: Response,
    *,
    page: str,
    done: Iterable[str],
    details: Mapping[str, str | int] | None = None,
) -> None:
    """Leave the confirmations `done` (SAVED, LINKED, ...) for the next view of `page` (the path
    the response redirects to, without its query) in this session, with their `details` (what
    `take_details` gives that view); nothing when there are none."""
    kinds = sorted(set(done))
    if not kinds:
        return
    session: WebSession = request.state.session
    state: dict[str, Any] = {"k": kinds}
    if details:
        state["d"] = dict(details)
    token = ui.services.tokens.encode(_scope(session, page), state)
    set_cookie(request, response, ui.cookie(FLASH_COOKIE), token, FLASH_SECONDS)


def take(ui: UI, request: Request, *, page: str) -> frozenset[str]:
    """The confirmations left for this view of `page`, as `confirm` named it (empty when none,
    or when the cookie is another page's, another session's, or not one this server sealed).
    The caller clears them with `clear` on the page's response when it got any: a cookie left
    for another page (opened in another tab meanwhile) stays for it."""
    kinds = _state(ui, request, page).get("k")
    if not isinstance(kinds, list):
        return frozenset()
    return frozenset(k for k in kinds if isinstance(k, str))


def take_details(ui: UI, request: Request, *, page: str) -> dict[str, str | int]:
    """The details `confirm` left with this view's confirmations (empty when none: `take`)."""
    details = _state(ui, request, page).get("d")
    if not isinstance(details, dict):
        return {}
    return {k: v for k, v in details.items() if isinstance(v, str | int)}


def _state(ui: UI, request: Request, page: str) -> dict[str, Any]:
    """What `confirm` sealed for this view of `page`; empty when there is nothing for it."""
    token = cookie_value(request, ui.cookie(FLASH_COOKIE))
    if not token:
        return {}
    session: WebSession = request.state.session
    try:
        return ui.services.tokens.decode(_scope(session, page), token)
    except BadRequest:
        return {}


def clear(ui: UI, request: Request, response: Response) -> None:
    """Forget the confirmations once shown: a reload shows the page without them."""
    clear_cookie(request, response, ui.cookie(FLASH_COOKIE))
