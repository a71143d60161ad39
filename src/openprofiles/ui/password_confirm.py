"""The acting administrator's own password, asked again before a sensitive change: an API
credential created or deleted, a user created, another user's password set, a user's role
changed, a user deleted. A session is not enough for these: one left open on a desk, or a
stolen cookie, would otherwise hand out an admin key or another account (a user created unasked
would be a new administrator whose password the session's holder chose, and so a way round all
the others), or cut an integration's key off for good.

The password is checked as a sign-in's is (ui.password_checks: the throttle first, then one of
the Argon2 slots), so the form is no way to guess it: a wrong one counts as a failed sign-in of
the administrator's name from the client's address, and enough of them lock it as sign-in would.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from openprofiles.errors import Throttling
from openprofiles.ui.password_checks import (
    BUSY_MESSAGE,
    RETRY_AFTER_SECONDS,
    Busy,
    check_password,
    form_password,
)
from openprofiles.ui.web import UI
from openprofiles.users import service as users
from openprofiles.users.models import WebSession

# The form field's name (a page with two such forms names the second one otherwise).
FIELD = "your_password"
LABEL = "Your password"
MISSING = "Type your own password to confirm this change."
WRONG = "This is not your password. Type the password you sign in with."


@dataclass(frozen=True)
class Refusal:
    """Why the change was not made, and the status to answer with."""

    message: str
    status: int

    def answered(self, response: Response) -> Response:
        """`response` (the form again, with `message`) told to come back later when busy."""
        if self.status == 503:
            response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response


def form_again(
    ui: UI,
    request: Request,
    template: str,
    *,
    refused: Refusal | None,
    invalid: bool = False,
    **context: object,
) -> Response:
    """A form page with its `password_error` field: answered with the refusal's status (and
    Retry-After when busy) and its message under the password, else 400 when another field
    was `invalid`, else 200."""
    page = ui.render(
        request,
        template,
        status=refused.status if refused else 400 if invalid else 200,
        password_error=refused.message if refused else "",
        **context,
    )
    return refused.answered(page) if refused else page


async def refusal(ui: UI, request: Request, field: str = FIELD) -> Refusal | None:
    """None when the form's `field` holds the signed-in user's password; else why not (nothing
    typed, a wrong password, the name or address locked by the throttle, every slot busy)."""
    session: WebSession = request.state.session
    password = form_password(request.state.form, field)
    if not password:
        # Nothing to check: not an attempt, so not counted.
        return Refusal(MISSING, 400)
    address = request.client.host if request.client else None
    try:
        checked = await check_password(
            ui, username=session.username, password=password, address=address
        )
        # Settled in a transaction of its own, before the change: a change then refused (the
        # last administrator) does not make a right password count as a failure.
        right = await ui.write(
            lambda tx: users.confirm_password(
                tx, username=session.username, password=password, address=address, checked=checked
            )
        )
    except Throttling as exc:
        return Refusal(exc.message, 429)
    except Busy:
        return Refusal(BUSY_MESSAGE, 503)
    return None if right else Refusal(WRONG, 400)
