"""Sign-in (throttled: users.throttle), sign-out and the landing page that sends each role to its
workspace. Every sign-in attempt is audit-logged (openprofiles.audit.sign_in), a form refused
unread too (SIGN_IN_UNREAD); a sign-out is a signed-in user's POST, logged as each is
(ui.web.UI.page). A user whose password someone else chose (users.service
`must_change_password`, the first run's `admin`) lands on the password page, the only one open
to them, with signing out, until they choose their own."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from openprofiles import audit
from openprofiles.errors import Throttling
from openprofiles.ui import submissions
from openprofiles.ui.password_checks import (
    BUSY_MESSAGE,
    RETRY_AFTER_SECONDS,
    Busy,
    check_password,
    form_password,
)
from openprofiles.ui.web import (
    ENDED_COOKIE,
    PASSWORD_PAGE,
    SESSION_COOKIE,
    SIGNIN_COOKIE,
    UI,
    clear_cookie,
    cookie_value,
    csrf_ok,
    form_text,
    new_signin_token,
    safe_next,
    set_cookie,
)
from openprofiles.users import service as users
from openprofiles.users.models import WebSession

SIGNIN_TOKEN_AGE = 3600
# What new_signin_token makes (secrets.token_urlsafe(32)): a cookie's value is reused only so.
SIGNIN_TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{43}")
# The audit log's result of an attempt refused because the process was checking as many
# passwords as it may at once (password_checks.Busy): nothing was checked or counted.
SIGN_IN_BUSY = "busy"
# The audit log's result of an attempt whose form was refused unread (web.UI.read_form), by the
# status of the refusal.
SIGN_IN_UNREAD = {
    413: "form-too-large",
    415: "form-multipart",
    # A form whose text is not UTF-8 (a script's: browsers send UTF-8), answered with a page.
    400: "form-not-utf8",
}
# The result of an attempt whose browser left before its form was read whole: an empty 400, as
# nobody is there to read a page (web.UI.read_form).
SIGN_IN_LEFT = "form-incomplete"


def unread(refusal: Response) -> str:
    """The audit log's result of a sign-in form refused unread with `refusal`."""
    if refusal.status_code == 400 and not refusal.body:
        return SIGN_IN_LEFT
    return SIGN_IN_UNREAD.get(refusal.status_code, "form-refused")


def routes(ui: UI) -> list[Route]:
    users.dummy_hash()  # now, so the first sign-in with an unknown username is not slower

    async def home(request: Request) -> Response:
        session = await ui.load_session(request)
        if session is None:
            return RedirectResponse("/ui/sign-in", status_code=303)
        return RedirectResponse(landing(session), 303)

    async def sign_in(request: Request) -> Response:
        if request.method in ("GET", "HEAD"):  # Starlette routes HEAD here too
            return sign_in_page(ui, request)
        form = await ui.read_form(request)
        if isinstance(form, Response):
            # Refused unread (too large, a file upload), or the browser left: an attempt all
            # the same (a flood of them is worth seeing), logged with why and under no name,
            # as none was read (and none of what was read is kept).
            audit.sign_in(user=audit.NONE, status=form.status_code, result=unread(form))
            return form
        expected = cookie_value(request, ui.cookie(SIGNIN_COOKIE))
        username = form_text(form, "username")
        if not expected or not csrf_ok(form, expected):
            return sign_in_page(
                ui,
                request,
                username=username,
                error="The sign-in form had expired; please sign in again.",
                status=403,
                # Where it was going, but not a kept form: a form another site posted (its
                # token cannot match) must not put its values in front of the agent.
                form=form,
                carry_kept=False,
            )
        password = form_password(form, "password")
        address = request.client.host if request.client else None
        try:
            # Counted, then Argon2 on its own threads with no write transaction open, at most
            # so many at once (password_checks says why).
            checked = await check_password(
                ui, username=username, password=password, address=address
            )
            created = await ui.write(
                lambda tx: users.sign_in(
                    tx, username=username, password=password, address=address, checked=checked
                )
            )
        except Throttling as exc:
            refused = sign_in_page(
                ui, request, username=username, error=exc.message, status=429, form=form
            )
            return audited(username, refused, audit.SIGN_IN_LOCKED)
        except Busy:
            busy = sign_in_page(
                ui, request, username=username, error=BUSY_MESSAGE, status=503, form=form
            )
            busy.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
            return audited(username, busy, SIGN_IN_BUSY)
        if created is None:
            failed = sign_in_page(
                ui,
                request,
                username=username,
                error="The username or password is not right. Check them and try again.",
                status=401,
                form=form,
            )
            return audited(username, failed, audit.SIGN_IN_FAILED)
        if created.session.must_change_password:
            # A password someone else chose: its page first (web.UI.page sends every other
            # there anyway), and no kept form, which only that page could be sent to now.
            response: Response = RedirectResponse(PASSWORD_PAGE, status_code=303)
        else:
            target = ui.after_sign_in(
                form_text(form, "next"),
                form_text(form, "next_query"),
                landing(created.session),
                user=created.session.username,
            )
            response = back_to_kept_form(
                request, form, target, created.session
            ) or RedirectResponse(target, status_code=303)
        set_cookie(
            request,
            response,
            ui.cookie(SESSION_COOKIE),
            created.token,
            int(users.SESSION_LIFETIME.total_seconds()),
        )
        clear_cookie(request, response, ui.cookie(SIGNIN_COOKIE))
        return audited(created.session.username, response, audit.SIGNED_IN)

    def audited(username: str, response: Response, result: str) -> Response:
        """`response` to a sign-in attempt, logged (openprofiles.audit) under the audit name of
        the name typed: a keyed digest, the same for a user's name as for any other, so the
        line says neither the name nor whether it is a user's."""
        user = users.audit_name(ui.services.keys.system_cipher(), username)
        audit.sign_in(user=user, status=response.status_code, result=result)
        return response

    def back_to_kept_form(
        request: Request, form: FormData, target: str, session: WebSession
    ) -> Response | None:
        """After sign-in, when the sign-in page held a form sent after its session ended
        (web.UI.keep_form) that this user may have back: a page with one button that takes it
        back to its page (submissions.reopen_form), with this session's CSRF token. A button
        because only a POST can carry the form there, and the pages work without scripts."""
        kept = form_text(form, submissions.KEPT_FORM_FIELD)
        if not kept:
            return None
        reopened = submissions.reopen_form(
            ui.services,
            path=target.partition("?")[0],
            sealed=kept,
            username=session.username,
            now=datetime.now(UTC),
        )
        if reopened is None:  # too old, or another user's: the page as it is now
            return None
        request.state.session = session  # the page is the new session's
        return ui.render(request, "sign_in.html", kept=kept, back_to=target)

    @ui.page("agent", nothing_to_lose=True, before_own_password=True)
    async def sign_out(request: Request) -> Response:
        token = ui.session_token(request)
        await ui.write(lambda tx: users.delete_session(tx, token=token))
        response = RedirectResponse("/ui/sign-in", status_code=303)
        # This installation's cookie only: another server's on this host stays signed in.
        clear_cookie(request, response, ui.cookie(SESSION_COOKIE))
        return response

    return [
        Route("/ui/", home, methods=["GET"]),
        Route("/ui/sign-in", sign_in, methods=["GET", "POST"]),
        Route("/ui/sign-out", sign_out, methods=["POST"]),
    ]


def landing(session: WebSession) -> str:
    """Where a signed-in user starts: their role's workspace, or the password page while they
    must choose their own password (users.service `must_change_password`)."""
    if session.must_change_password:
        return PASSWORD_PAGE
    return "/admin/" if session.role == "admin" else "/agent/"


def sign_in_page(
    ui: UI,
    request: Request,
    *,
    username: str = "",
    error: str = "",
    status: int = 200,
    form: FormData | None = None,
    next_path: str | None = None,
    next_query: str = "",
    kept: str = "",
    carry_kept: bool = True,
) -> Response:
    """The sign-in page; after a failed POST (`form`), the page to return to is the one
    the form carried (the POST's own address has no query), so a mistyped password does
    not lose the screen-pop address the agent came from. `next_path`, `next_query` and
    `kept`: the page whose form was sent after its session ended, and that form sealed
    (web.UI.keep_form); a failed sign-in carries them on, unless `carry_kept` is False (a
    sign-in form whose own CSRF token failed, which anyone could have sent)."""
    # Before sign-in there is no session to hold a CSRF token, so the form's token is also
    # set in a cookie and both must match (a forged form cannot read or set the cookie).
    # A browser that has one already keeps it: a second sign-in tab (a screen pop opening
    # while another tab shows the sign-in page) used to replace it, and the first tab's
    # sign-in then failed as an expired form, losing where it was going.
    held = cookie_value(request, ui.cookie(SIGNIN_COOKIE))
    token = held if SIGNIN_TOKEN_PATTERN.fullmatch(held) else new_signin_token()
    if next_path is None and form is None:
        next_path = request.query_params.get("next", "").strip()
        next_query = request.query_params.get("next_query", "").strip()
    elif next_path is None and form is not None:
        next_path, next_query = form_text(form, "next"), form_text(form, "next_query")
        kept = form_text(form, submissions.KEPT_FORM_FIELD) if carry_kept else ""
    if safe_next(next_path, "") != next_path:
        # Only a local path is kept (after_sign_in would drop any other anyway).
        next_path, next_query, kept = "", "", ""
    # A form sent to `next_path` with no live session and not kept (web.UI.session_ended): said
    # once, on the page the redirect leads to; nothing of the form is shown.
    lost = form is None and not kept and ui.form_was_lost(request, next_path or "")
    response = ui.render(
        request,
        "sign_in.html",
        status=status,
        signin_token=token,
        username=username,
        error=error,
        next=next_path,
        next_query=next_query,
        kept=kept,
        lost=lost,
    )
    set_cookie(request, response, ui.cookie(SIGNIN_COOKIE), token, SIGNIN_TOKEN_AGE)
    if lost:
        clear_cookie(request, response, ui.cookie(ENDED_COOKIE))
    return response
