"""One-shot confirmations ("Profile saved.", "Contact ... is now linked", "Your password has
been changed.") shown on the page a change redirects to (POST, redirect, GET).

They used to ride in the address (`?saved=1`, `&linked=1`, `?changed=1`), so a link anyone could
send showed "Saved" for a change that never happened. Now the POST that made the change leaves a
short-lived cookie that only the next view of that page, in that session, reads and clears: its
value is sealed (services.tokens) to the session (its CSRF token, which no other session has)
and to the page's path, so it cannot be written by hand nor carried from another session or to
another page, and it is shown once, not again on reload, from the history or from a link.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.requests import Request
from starlette.responses import Response

from openprofiles.errors import BadRequest
from openprofiles.ui.web import UI, clear_cookie, set_cookie
from openprofiles.users.models import WebSession

# The start of the cookie's name (UI.cookie: each installation's has a suffix of its own).
FLASH_COOKIE = "op_flash"
# Long enough for the browser to follow the redirect; a confirmation not shown by then is moot.
FLASH_SECONDS = 60
SAVED = "saved"
LINKED = "linked"
PASSWORD_CHANGED = "password"
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
) -> None:
    """Leave the confirmations `done` (SAVED, LINKED, ...) for the next view of `page` (the path
    the response redirects to, without its query) in this session; nothing when there are
    none."""
    kinds = sorted(set(done))
    if not kinds:
        return
    session: WebSession = request.state.session
    token = ui.services.tokens.encode(_scope(session, page), {"k": kinds})
    set_cookie(request, response, ui.cookie(FLASH_COOKIE), token, FLASH_SECONDS)


def take(ui: UI, request: Request, *, page: str) -> frozenset[str]:
    """The confirmations left for this view of `page`, as `confirm` named it (empty when none,
    or when the cookie is another page's, another session's, or not one this server sealed).
    The caller clears them with `clear` on the page's response when it got any: a cookie left
    for another page (opened in another tab meanwhile) stays for it."""
    token = request.cookies.get(ui.cookie(FLASH_COOKIE))
    if not token:
        return frozenset()
    session: WebSession = request.state.session
    try:
        state = ui.services.tokens.decode(_scope(session, page), token)
    except BadRequest:
        return frozenset()
    kinds = state.get("k")
    if not isinstance(kinds, list):
        return frozenset()
    return frozenset(k for k in kinds if isinstance(k, str))


def clear(ui: UI, request: Request, response: Response) -> None:
    """Forget the confirmations once shown: a reload shows the page without them."""
    clear_cookie(request, response, ui.cookie(FLASH_COOKIE))
