"""The plumbing every page shares: templates, sign-in sessions in cookies, CSRF checks, role
checks, friendly error pages and running service calls off the event loop.

Sessions live on the server (users.service); the browser keeps only a random token in an
HttpOnly, SameSite=Lax cookie, Secure whenever the page is served over https (served_over_https;
every answer of the pages then carries Strict-Transport-Security too: hsts), and then named
with the `__Host-` prefix (browser_name), so that no other host under the domain and no other
port of this one can plant one. Every form of a session carries the session's CSRF token in a
hidden field; a POST without the right one is refused before the page's code runs. Cookies
ignore ports, so each installation's cookies have names of their own (cookie_name).

Addresses end up in access logs and the browser's history, so no page puts a personal value in
one: a page that needs one in its address carries it sealed (services.tokens), and the sign-in
page keeps only the path of the page to return to, its query sealed to that path.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, unquote_to_bytes

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from openprofiles import audit
from openprofiles.context import Services, Tx
from openprofiles.domains import service as domains
from openprofiles.domains.service import told_to_agents, unreadable_domain
from openprofiles.errors import AccessDenied, BadRequest, InternalServer, NotFound, ServiceError
from openprofiles.log_limits import KEY_PROBLEM_LOG_WINDOW_SECONDS, RepeatedLines
from openprofiles.logging_setup import describe
from openprofiles.object_types import service as object_types
from openprofiles.store.conflicts import retrying
from openprofiles.ui import submissions
from openprofiles.ui.history import shown_time
from openprofiles.users import service as users
from openprofiles.users.models import WebSession

# The start of the cookies' names; each installation's names go on with a suffix of its own
# (cookie_name).
SESSION_COOKIE = "op_session"
# Every signed-in user's own password page (ui.user_pages): the only page, with signing out, of
# a user whose password someone else chose (users.service `must_change_password`).
PASSWORD_PAGE = "/ui/password"
SIGNIN_COOKIE = "op_signin"
# Left by a form sent with no live session (UI.session_ended): the sign-in page it leads to says
# that what was sent was not saved (UI.form_was_lost).
ENDED_COOKIE = "op_ended"
# Long enough for the browser to follow the redirect to the sign-in page.
ENDED_SECONDS = 60
TEMPLATES_DIR = Path(__file__).with_name("templates")
STATIC_DIR = Path(__file__).with_name("static")

T = TypeVar("T")
# (path, query, user) -> the page's address with the query sealed for the user, or None when the
# path is not the page's (UI.seal_on_return).
ReturnSealer = Callable[[str, str, str], "str | None"]
logger = logging.getLogger(__name__)


def _report_left_out(key: tuple[str | None, str], left_out: int) -> None:
    """The count of a key problem's page lines left out, for a (domain, problem) the pages'
    limiter stops following (log_limits.RepeatedLines) before a page line of it said it."""
    domain_name, problem = key
    logger.warning(
        "pages (domain %s): a domain's key cannot be used: %s%s",
        domain_name or "-",
        problem,
        _key_problem_lines.left_out_note(left_out, "page requests of the domain"),
    )


# The key problems the pages log (UI.unreadable_reason), by domain and problem.
_key_problem_lines: RepeatedLines[tuple[str | None, str]] = RepeatedLines(
    KEY_PROBLEM_LOG_WINDOW_SECONDS, report=_report_left_out
)
Endpoint = Callable[[Request], Awaitable[Response]]

# What a page's form may be (UI.read_form, the only way the pages read one). Starlette's defaults
# let a form be a thousand fields of 1 MB each, read whole into memory before any check (a
# sign-in needs no account), and a multipart form's files unbounded, spooled to disk. The
# largest form the pages make is the profile edit form of a profile at the form's limits, each
# field twice (as typed and as shown, profile_form.SHOWN_PREFIX), 100 attributes of 255
# characters a name and a value, every character one that takes 12 bytes url-encoded (an emoji,
# %F0%9F%98%80): 1,379,439 bytes in 51 fields, its largest field (the attributes) 613,105 bytes;
# the sign-in form that carries such a form kept (submissions.keep_form) 614,051 bytes (measured
# and sent by tests/unit/ui/test_ui_form_limits.py). Each limit leaves half again or more.
MAX_FORM_BYTES = 2 * 1024 * 1024
MAX_FORM_FIELDS = 100
MAX_FIELD_BYTES = 1024 * 1024
# No page's form sends a file: a multipart form is refused unread (415).
MULTIPART = "multipart/form-data"

# Pages hold personal data: never cached, never framed, and no script but the application's own
# static files (static/local-time.js, which only rewrites times into the browser's time zone):
# no inline script, nothing from elsewhere. Every page works without it.
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; script-src 'self'"
    ),
}


# Strict-Transport-Security on every answer served over HTTPS (hsts): a year, the least that
# browsers' HSTS checks accept as lasting. No includeSubDomains (other hosts under the domain are
# not ours to bind to HTTPS) and no preload (a list browsers ship, hard to leave again: an
# operator's decision, not a default).
HSTS_HEADER = (b"strict-transport-security", b"max-age=31536000")


def hsts(app: ASGIApp) -> ASGIApp:
    """`app` with Strict-Transport-Security added to its answers served over HTTPS
    (served_over_https), never over plain HTTP: there a browser ignores it anyway, and a
    development server on http://127.0.0.1 must not be bound to an HTTPS it does not speak.
    Once a browser has seen it, it goes to these pages over HTTPS only, so a network attacker
    cannot strip TLS from a later visit that starts at http:// (a typed address, an old link)
    and read the session cookie or the password."""

    async def with_hsts(scope: Scope, receive: Receive, send: Send) -> None:
        if not served_over_https(scope):
            await app(scope, receive, send)
            return

        async def send_with_hsts(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0] != HSTS_HEADER[0]]
                message = {**message, "headers": [*headers, HSTS_HEADER]}
            await send(message)

        await app(scope, receive, send_with_hsts)

    return with_hsts


def _format_time(value: datetime | None) -> str:
    """The pages' `time` filter: a time to the minute in UTC, read as history.shown_time reads
    it (one format for every time a page shows)."""
    shown = shown_time(value)
    return shown.text if shown is not None else ""


class UI:
    """What the pages need: the services and the template environment."""

    def __init__(self, services: Services) -> None:
        self.services = services
        # Autoescaping on for every template: all output is escaped unless a template says not.
        self.env = Environment(
            loader=FileSystemLoader(TEMPLATES_DIR),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["time"] = _format_time
        self.env.filters["urlpart"] = lambda v: quote(str(v), safe="")
        self._cookie_suffix = _cookie_suffix(services)
        # The pages that take a query back after sign-in only sealed (after_sign_in).
        self._return_sealers: list[ReturnSealer] = []

    def cookie(self, name: str) -> str:
        """This installation's name of the cookie `name` (SESSION_COOKIE, ...), which the
        cookie functions (set_cookie, cookie_value) prefix over HTTPS (browser_name)."""
        return f"{name}-{self._cookie_suffix}"

    def session_token(self, request: Request) -> str:
        """The session cookie's value; "" when the browser sent none."""
        return cookie_value(request, self.cookie(SESSION_COOKIE))

    async def run(self, work: Callable[[], T]) -> T:
        """Run blocking work (a KMS or SQS call) off the event loop."""
        return await run_in_threadpool(work)

    async def read(self, work: Callable[[Tx], T]) -> T:
        def run() -> T:
            with self.services.read() as tx:
                return work(tx)

        return await run_in_threadpool(run)

    async def write(self, work: Callable[[Tx], T]) -> T:
        """`work` in a write transaction, run again when it lost a race with another process
        (PostgreSQL; store.conflicts), as an API request would be: it is one transaction, and
        what it leaves for after the commit is dropped with a rollback."""

        def run() -> T:
            with self.services.write() as tx:
                return work(tx)

        return await run_in_threadpool(retrying, run)

    def render(
        self, request: Request, template: str, *, status: int = 200, **context: Any
    ) -> HTMLResponse:
        session: WebSession | None = getattr(request.state, "session", None)
        from openprofiles.ui.nav import admin_nav

        body = self.env.get_template(template).render(
            request=request,
            session=session,
            csrf_token=session.csrf_token if session else "",
            admin_nav=admin_nav() if session and session.role == "admin" else [],
            path=request.url.path,
            **context,
        )
        return HTMLResponse(focus_first_invalid(body), status_code=status, headers=SECURITY_HEADERS)

    def error_page(self, request: Request, status: int, title: str, message: str) -> HTMLResponse:
        return self.render(request, "error.html", status=status, title=title, message=message)

    def unreadable_page(
        self, request: Request, session: WebSession, error: ServiceError
    ) -> HTMLResponse:
        """The page for a domain whose data cannot be read because its key cannot be used
        (unreadable_domain), with `unreadable_reason`'s status and message."""
        status, message = self.unreadable_reason(request, session, error)
        return self.error_page(request, status, "Customer data cannot be read", message)

    def unreadable_reason(
        self, request: Request, session: WebSession, error: ServiceError
    ) -> tuple[int, str]:
        """(status, what `session`'s user is told) of an error that says a domain's data cannot
        be read because its key cannot be used (unreadable_domain): 403 while the key is refused
        (disabled, deleted, access revoked), 503 while its KMS does not answer (it may come back
        by itself). The key provider's message names the key, the KMS endpoint and what to run
        or change: an administrator gets it to act on; an agent, who can only ask one, gets what
        failed in plain words."""
        transient = isinstance(error, InternalServer)
        # For the operator, whoever saw it: the provider's message (KeyUnusable carries no
        # personal value; logging_setup prints it) and the page, not the request's query. Once
        # per domain and message in KEY_PROBLEM_LOG_WINDOW_SECONDS, as the API logs it
        # (wire.dispatch): during a KMS outage every agent's every page meets it.
        domain_name = _page_domain(request)
        lines = _key_problem_lines
        # Keyed by the problem as the log describes it (type, and message when safe): a count
        # the limiter reports on its own (_report_left_out) has only the key to say it with.
        cause = error.__cause__
        left_out = lines.admit((domain_name, describe(cause) if cause is not None else "-"))
        if left_out is not None:
            # The exception itself, not its text: logging_setup describes it (type, message).
            logger.warning(
                "%s (domain %s): a domain's key cannot be used: %s%s",
                request.url.path,
                domain_name or "-",
                error.__cause__,
                lines.left_out_note(left_out, "page requests of the domain"),
            )
        message = error.message if session.role == "admin" else told_to_agents(error)
        return 503 if transient else 403, message

    async def read_form(self, request: Request) -> FormData | Response:
        """The form `request` carries, read within MAX_FORM_BYTES, MAX_FORM_FIELDS and
        MAX_FIELD_BYTES; else the answer that refuses it, nothing of it kept: 413 when its
        declared length is over (its body is not read) or once the bytes read pass it (a body
        sent in chunks declares none: reading stops there) or a field count or size is over, 415
        for a multipart form (no page sends one), 400 for a form whose text is not UTF-8 (read
        whole, kept nowhere), and an empty 400 when the browser left before sending it whole
        (nobody to answer). Every form the pages read comes through here."""
        media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if media_type == MULTIPART:
            return self._form_refused(
                request,
                415,
                "This form cannot be read",
                "The pages' forms are sent as plain fields, never as files, and this one was sent "
                "as a file upload (multipart/form-data). Nothing was saved. Go back to the page, "
                "reload it and send the form from there.",
            )
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_FORM_BYTES:
            return self._form_too_large(request)
        received = 0
        # The body as sent, for _utf8_form (within MAX_FORM_BYTES, as what is parsed from it).
        chunks: list[bytes] = []

        async def counted() -> Message:
            nonlocal received
            message = await request.receive()
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > MAX_FORM_BYTES:
                raise _FormTooLarge
            chunks.append(chunk)
            return message

        try:
            form = await Request(request.scope, counted).form(
                max_files=0, max_fields=MAX_FORM_FIELDS, max_part_size=MAX_FIELD_BYTES
            )
        except ClientDisconnect:
            # The browser left before sending the whole form (a second click of a submit
            # button aborts the first request): nothing to do, and nobody to answer. It used
            # to be logged as an application error.
            return Response(status_code=400)
        except (_FormTooLarge, HTTPException):
            # HTTPException: Starlette's for a form over max_fields or max_part_size.
            return self._form_too_large(request)
        if not _utf8_form(b"".join(chunks)):
            # Starlette decodes what is not UTF-8 into U+FFFD (or raw bytes as Latin-1), and
            # the page stored that in place of what was typed. Browsers always send UTF-8,
            # percent-encoded: such a form comes from a script, told what to fix.
            return self.error_page(
                request,
                400,
                "That did not work",
                "The form's text is not valid UTF-8, percent-encoded (as browsers send a "
                "form), so what it says cannot be read. Nothing was saved. Send the form from "
                "the page in a browser, or have your client encode the fields as UTF-8 and "
                "percent-encode them (application/x-www-form-urlencoded).",
            )
        return form

    def _form_too_large(self, request: Request) -> HTMLResponse:
        return self._form_refused(
            request,
            413,
            "This form is too large",
            f"A form of these pages is at most {MAX_FORM_BYTES // (1024 * 1024)} MB, in at most "
            f"{MAX_FORM_FIELDS} fields, and this one was larger. Nothing was saved. Go back, "
            "shorten what you typed and send it again.",
        )

    def _form_refused(
        self, request: Request, status: int, title: str, message: str
    ) -> HTMLResponse:
        """The page that refuses a form unread or read only in part; the connection is closed
        after it, rather than reading the rest of the body to keep it open."""
        page = self.error_page(request, status, title, message)
        page.headers["Connection"] = "close"
        return page

    # ---------------------------------------------------------------- sessions

    async def load_session(self, request: Request) -> WebSession | None:
        token = self.session_token(request)
        if not token:
            return None
        session = await self.read(lambda tx: users.get_session(tx, token=token))
        if session is not None and session.touch_due:
            # At most once a minute a session: its idle time starts again (users.SESSION_IDLE).
            await self.write(lambda tx: users.touch_session(tx, token=token))
        return session

    def sign_in_url(self, request: Request) -> str:
        """The sign-in page, to come back to `request` after. The path is kept as it is
        (address_path: as sent, so a contact id's "%2F" stays one); the query, which may hold
        personal values (e.g. an old search address), only sealed to that path (in
        `next_query`)."""
        url = f"/ui/sign-in?next={quote(address_path(request), safe='')}"
        sealed = self.sealed_query(request)
        return url + (f"&next_query={sealed}" if sealed else "")

    def sealed_query(self, request: Request) -> str:
        """The query of `request` sealed to its path, for after sign-in (after_sign_in); ""
        when it has none, or one too long to seal (back to the page without its query)."""
        if not request.url.query:
            return ""
        try:
            return self.services.tokens.encode(
                _next_scope(address_path(request)), {"q": request.url.query}
            )
        except ValueError:
            return ""

    def seal_on_return(self, sealer: ReturnSealer) -> None:
        """Have `sealer` make the address sign-in leads back to, for a page whose query may
        hold a customer's value (a search address from before searches were sealed): it is
        given (the path, the query sign_in_url sealed, the user signed in) and answers the
        page's address with that query sealed for the user, or None when the path is not its
        page's. Registered by the page's module (agent_pages), so this one knows no page."""
        self._return_sealers.append(sealer)

    def after_sign_in(
        self, next_path: str, next_query: str, default: str, *, user: str | None = None
    ) -> str:
        """Where sign-in leads: the local path `next_path` (any query of its own dropped) with
        the query sealed to it by sign_in_url, else `default`. For a page that registered a
        sealer (seal_on_return), the address it makes for `user`: the query used to be put back
        in the clear (`?q=` of an old search address), and that one more request line carried
        the customer's value before the page sent it on to its sealed address."""
        path = safe_next(next_path or None, default).partition("?")[0].partition("#")[0]
        if not next_query:
            return path
        try:
            state = self.services.tokens.decode(_next_scope(path), next_query)
        except BadRequest:
            return path  # changed, too old, or another page's: the page without its query
        query = state.get("q")
        if not isinstance(query, str) or not query:
            return path
        if user is not None:
            for sealer in self._return_sealers:
                sealed = sealer(path, query, user)
                if sealed is not None:
                    return sealed
        return f"{path}?{query}"

    async def keep_form(self, request: Request) -> Response:
        """The answer to a form sent after its session ended (an hour idle, or 12 hours): the
        sign-in page, with the form sealed in it (submissions.keep_form), so that signing in
        brings the agent back to what they typed instead of losing it.

        Only a form of a session whose user is known (its row is still there: ended by idling,
        by its 12 hours, or by a new password, which ends sessions without deleting them,
        users.set_password; not after sign-out, whose browser no longer sends the cookie, nor
        after the user's deletion, nor once cleared), kept for that user alone: with no session
        there is no CSRF token to check, so what comes back must be what that user's browser
        sent, and it comes back only to someone who signs in as that user (with the new
        password, after one was set). And only a form a browser says was sent from one of this
        site's pages (Sec-Fetch-Site, which a page cannot set; any HTTP client can, hence the
        owner). Other requests, and a form too large to keep, are sent to sign in, told that
        what they sent was not saved (session_ended): a form sent after signing out in another
        tab, or after the user's deletion, used to be dropped with no word, and the agent found
        an empty form after signing in. Nothing of such a form is read or kept, nor echoed: only
        the fact that one was sent."""
        if request.headers.get("sec-fetch-site") != "same-origin":
            return self.session_ended(request)
        token = self.session_token(request)
        # Whose session it was, while its row is there: the form goes back to that user only.
        # Known before the form is read: a request of no known session is not read at all.
        owner = (
            await self.read(lambda tx: users.session_username(tx, token=token)) if token else None
        )
        if owner is None:
            return self.session_ended(request)
        form = await self.read_form(request)
        if isinstance(form, Response):
            return form
        path = address_path(request)
        kept = submissions.keep_form(
            self.services, path=path, username=owner, form=form, now=datetime.now(UTC)
        )
        if kept is None:
            return self.session_ended(request)
        from openprofiles.ui.auth_pages import sign_in_page  # it imports this module

        return sign_in_page(
            self, request, next_path=path, next_query=self.sealed_query(request), kept=kept
        )

    def session_ended(self, request: Request) -> Response:
        """The answer to a form sent with no live session that is not kept (keep_form): the
        sign-in page (sign_in_url), which then says that the session had ended and what was
        sent was not saved (form_was_lost). Said through a short-lived cookie sealed to the
        page to return to, not the address: a link cannot make the page say it, and the
        redirect keeps a reload of the sign-in page from sending the form again."""
        response = RedirectResponse(self.sign_in_url(request), status_code=303)
        sealed = self.services.tokens.encode(_ended_scope(address_path(request)), {})
        set_cookie(request, response, self.cookie(ENDED_COOKIE), sealed, ENDED_SECONDS)
        return response

    def form_was_lost(self, request: Request, next_path: str) -> bool:
        """Whether the sign-in page for `next_path` follows a form sent to it with no live
        session and not kept (session_ended), within ENDED_SECONDS."""
        sealed = cookie_value(request, self.cookie(ENDED_COOKIE))
        if not sealed or not next_path:
            return False
        try:
            self.services.tokens.decode(_ended_scope(next_path), sealed)
        except BadRequest:
            return False
        return True

    def page(
        self,
        role: str = "agent",
        *,
        keep_form: bool = False,
        nothing_to_lose: bool = False,
        before_own_password: bool = False,
        shows_personal_data: bool = False,
    ) -> Callable[[Endpoint], Endpoint]:
        """Wrap an endpoint: signed in, with `role` (admins may use every page), CSRF-checked
        on POST (the parsed form is then in request.state.form), and service errors shown as
        friendly pages. `keep_form`: a POST whose session has ended is kept for after sign-in
        (keep_form); the endpoint then gets it back in a POST with submissions.KEPT_FORM_FIELD.
        `nothing_to_lose`: a POST whose session has ended only goes to sign in, without the
        notice that what was sent was not saved (session_ended): signing out, say, after the
        session had ended anyway loses nothing. `before_own_password`: open to a user who must
        change their password first (the password page, signing out); every other page, GET or
        POST, sends them to PASSWORD_PAGE (which says why) and does nothing else.
        `shows_personal_data`: the page shows a customer's personal data, so each GET of it by
        a signed-in user is audit-logged as each POST of every page is (audit.page_get; which
        pages, and why, the audit module says), with the profiles it showed (show_profiles)."""

        def wrap(endpoint: Endpoint) -> Endpoint:
            async def guarded(request: Request) -> Response:
                session = await self.load_session(request)
                if session is None:
                    if keep_form and request.method == "POST":
                        return await self.keep_form(request)
                    if request.method == "POST" and not nothing_to_lose:
                        return self.session_ended(request)
                    return RedirectResponse(self.sign_in_url(request), status_code=303)
                request.state.session = session
                if request.method == "HEAD":
                    # Starlette routes HEAD to every GET endpoint; a page that also takes POST
                    # tells the two apart by the method, and took HEAD for a POST without its
                    # form (500). Answered as the GET is (the server leaves out the body).
                    request = Request({**request.scope, "method": "GET"}, request.receive)
                posted = request.method == "POST"
                if not posted and not shows_personal_data:
                    return await signed_in(request, session)
                # Every change a signed-in user makes is a POST through here, and every look at
                # a customer's data a GET of a page that shows it: the audit log says who, where
                # and how it ended, refusals included (openprofiles.audit).
                status = 500  # unless an answer comes: the error propagates to Starlette
                # The names of the address the store holds (audit.NAMED_PAGE_PARAMETERS: others
                # are written "(not valid)", as a customer's name typed there would be), looked
                # up before the page runs, so that one that removes what it names is written
                # with it; none when the lookup failed (the line then says 500).
                confirmed: frozenset[str] = frozenset()
                try:
                    if audit.NAMED_PAGE_PARAMETERS & request.path_params.keys():
                        params = request.path_params
                        confirmed = await self.read(lambda tx: _names_held(tx, params))
                    response = await signed_in(request, session)
                    status = response.status_code
                    return response
                finally:
                    user = users.audit_name(self.services.keys.system_cipher(), session.username)
                    route = getattr(request.scope.get("route"), "path", None)
                    path, parameters = request.url.path, request.path_params
                    if posted:
                        audit.page_post(
                            user=user,
                            path=path,
                            status=status,
                            route=route,
                            parameters=parameters,
                            confirmed=confirmed,
                        )
                    else:
                        audit.page_get(
                            user=user,
                            path=path,
                            status=status,
                            route=route,
                            parameters=parameters,
                            answered=shown_profiles(request),
                            confirmed=confirmed,
                        )

            async def signed_in(request: Request, session: WebSession) -> Response:
                if session.must_change_password and not before_own_password:
                    # A password someone else chose (the first run's, on disk in a file) opens
                    # nothing but the page to replace it. Before the form is read: a POST is
                    # not acted on, nor its form kept.
                    return RedirectResponse(PASSWORD_PAGE, status_code=303)
                # No name or id has a NUL, and PostgreSQL refuses one in a query's text (a 500
                # on every page that looked one up).
                if _holds_nul(request.path_params.values()):
                    return self.error_page(
                        request, 404, "Not found", "This address names nothing: it holds a NUL."
                    )
                if _holds_nul(request.query_params.values()):
                    return self.error_page(
                        request,
                        400,
                        "That did not work",
                        "This address holds a NUL character, which no value it may give has.",
                    )
                if role == "admin" and session.role != "admin":
                    return self.error_page(
                        request,
                        403,
                        "Not available to agents",
                        "This page is for administrators. Ask an administrator if you need "
                        "something changed here, or go back to the agent workspace.",
                    )
                if request.method == "POST":
                    form = await self.read_form(request)
                    if isinstance(form, Response):
                        return form
                    if not csrf_ok(form, session.csrf_token):
                        return self.error_page(
                            request,
                            403,
                            "This form has expired",
                            "The form was not sent from a page of this session (it may be from "
                            "before you last signed in). Go back, reload the page and try again.",
                        )
                    if _holds_nul(value for _, value in form.multi_items()):
                        # No field takes one (a name, an id, a customer's details alike).
                        return self.error_page(
                            request,
                            400,
                            "That did not work",
                            "A field of the form holds a NUL character, which no field takes. "
                            "Nothing was saved: go back and send the form without it.",
                        )
                    request.state.form = form
                try:
                    return await endpoint(request)
                except NotFound as exc:
                    return self.error_page(request, 404, "Not found", exc.message)
                except (AccessDenied, InternalServer) as exc:
                    if unreadable_domain(exc):
                        return self.unreadable_page(request, session, exc)
                    if isinstance(exc, InternalServer):
                        raise
                    return self.error_page(request, 403, "Not allowed", exc.message)
                except BadRequest as exc:
                    return self.error_page(request, 400, "That did not work", exc.message)

            guarded.__name__ = endpoint.__name__
            return guarded

        return wrap


# Where a page keeps the profiles it shows (show_profiles), in request.state.
_SHOWN_PROFILES = "shown_profiles"


def show_profiles(request: Request, profile_ids: Iterable[str]) -> None:
    """Say that the page answering `request` shows these profiles' data (a search's results,
    the profiles linked to a contact, a merge's): its audit line names them (UI.page,
    audit.page_get's `answered=`), as its path alone names at most one. A page declared
    `shows_personal_data` calls it as it renders them; called again, it adds."""
    setattr(request.state, _SHOWN_PROFILES, [*shown_profiles(request), *profile_ids])


def shown_profiles(request: Request) -> list[str]:
    """The profiles the page answering `request` said it shows (show_profiles); none yet: []."""
    return list(getattr(request.state, _SHOWN_PROFILES, []))


class _FormTooLarge(Exception):
    """A form's body passed MAX_FORM_BYTES while it was read (UI.read_form)."""


def _utf8_form(body: bytes) -> bool:
    """Whether a form's body (application/x-www-form-urlencoded) is ASCII whose percent-escapes
    decode to UTF-8: each field's name and value then do. The whole body is decoded at once:
    the separators ("&", "=") are ASCII, which no UTF-8 sequence of several bytes holds, so the
    body is valid exactly when each of its parts is, however the parser splits it."""
    if not body.isascii():
        return False
    try:
        unquote_to_bytes(body).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _holds_nul(values: Iterable[Any]) -> bool:
    """Whether any of the texts of `values` (an address's parts, a form's fields) holds a NUL."""
    return any(isinstance(value, str) and "\x00" in value for value in values)


def _names_held(tx: Tx, parameters: Mapping[str, Any]) -> frozenset[str]:
    """Which of a page's path `parameters` of audit.NAMED_PAGE_PARAMETERS name what the store
    holds: the domain ("domain", "name"), if it exists; "object_type", if that domain has a type
    of the name. Only for the audit line (UI.page): a page does its own checks. Only names of
    their form are looked up: another is not written anyway, and could be any text (a NUL, which
    PostgreSQL refuses)."""
    named = [key for key in ("domain", "name") if audit.in_page_form(key, parameters.get(key))]
    if not named or domains.find_domain(tx, domain_name=parameters[named[0]]) is None:
        return frozenset()
    held = set(named)
    object_type = str(parameters.get("object_type", ""))
    if audit.in_page_form("object_type", object_type) and (
        object_types.find_object_type(tx, domain_name=parameters[named[0]], name=object_type)
        is not None
    ):
        held.add("object_type")
    return frozenset(held)


def _page_domain(request: Request) -> str | None:
    """The domain a page's address names ("/agent/domains/{domain}...", "/admin/domains/{name}
    ...", "/admin/enable/{name}..."), if it names one."""
    named = request.path_params.get("domain") or request.path_params.get("name")
    return named if isinstance(named, str) else None


def _next_scope(path: str) -> str:
    return f"ui/sign-in-next\x00{path}"


def _ended_scope(path: str) -> str:
    return f"ui/session-ended\x00{path}"


def focus_first_invalid(body: str) -> str:
    """The page with `autofocus` on its first invalid field (the first control the
    `describedby` macro marked aria-invalid), so that after a refused form the focus is at the
    first field to correct, not on the page's body; unchanged when the page has no invalid
    field. Done here because the pages work without scripts, and only here can the first one in the
    page's order be known. The marker is only ever written by the templates: a value shown on
    the page has its quotes escaped."""
    return body.replace(_INVALID, _INVALID + " autofocus", 1)


_INVALID = ' aria-invalid="true"'


def csrf_ok(form: FormData, expected: str) -> bool:
    given = form.get("csrf_token")
    return isinstance(given, str) and hmac.compare_digest(given.encode(), expected.encode())


def new_signin_token() -> str:
    return secrets.token_urlsafe(32)


def cookie_name(services: Services, name: str, *, https: bool = False) -> str:
    """The name a browser holds this installation's cookie `name` (SESSION_COOKIE, ...) under,
    as set over HTTPS or not (browser_name of UI.cookie's), e.g. "op_session-3f0c9a51d2" or
    "__Host-op_session-3f0c9a51d2"."""
    return browser_name(f"{name}-{_cookie_suffix(services)}", https=https)


def _cookie_suffix(services: Services) -> str:
    """The end of this installation's cookie names.

    Cookies ignore ports: every server on one host (two OpenProfiles on 127.0.0.1, a test
    server beside a working one) gets the same cookies, and with one name for all, signing in to
    one replaced the other's session (signed its agent out) and sent each one's cookie to the
    other. The suffix comes from the installation's keyring (a system secret, so it says nothing
    of the key): every process that shares the keyring, the processes of one installation behind
    a load balancer included, uses the same names and so the same sessions; another
    installation, whatever its port, has names of its own."""
    return services.keys.system_secret("ui/cookie-names")[:5].hex()


def served_over_https(scope: Scope) -> bool:
    """Whether the request reached the browser over HTTPS: the server terminated TLS, or a
    proxy trusted by OPENPROFILES_FORWARDED_ALLOW_IPS said so (X-Forwarded-Proto; uvicorn's
    proxy headers middleware puts it in the scope, and from no other address). The one
    decision behind Secure cookies and their names (set_cookie, browser_name) and
    Strict-Transport-Security (hsts)."""
    return scope.get("scheme") == "https"


# The prefix of every cookie the pages set over HTTPS (browser_name).
HOST_PREFIX = "__Host-"


def browser_name(name: str, *, https: bool) -> str:
    """The name the cookie `name` (UI.cookie's) goes by in the browser: with the `__Host-`
    prefix when the page is served over HTTPS.

    A browser keeps a cookie so named only when it is Secure, for Path=/ and with no Domain
    (set_cookie's), so no other host under the domain (a sibling subdomain may set a cookie
    for the whole domain) and no other port of this host (cookies ignore ports) can plant one
    under that name: the session, sign-in and confirmation cookies can no longer be tossed in
    (a session of the attacker's, or a sign-in token of their choosing). Over plain HTTP
    (development on http://127.0.0.1) a browser refuses the prefix, as it does Secure, so the
    name stays plain there. Each request reads only the name of its own scheme (cookie_value):
    over HTTPS an unprefixed cookie, which anyone could have planted, is ignored.

    Upgrading to this version signs each user signed in over HTTPS out once (their session
    cookie has the old, unprefixed name, now ignored, and expires on its own), and a sign-in
    page open at the upgrade answers its form as expired once: one sign-in more, accepted as
    the price of closing the hole. While processes of both versions serve side by side (a
    rolling upgrade), each reads only its own version's cookie, so a user sent from one to the
    other may have to sign in on each; that ends with the upgrade."""
    return HOST_PREFIX + name if https else name


def cookie_value(request: Request, name: str) -> str:
    """The value of the cookie `name` (UI.cookie's) under the name for the request's scheme
    (browser_name); "" when the browser sent none."""
    return request.cookies.get(browser_name(name, https=served_over_https(request.scope)), "")


def set_cookie(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
    """Set the cookie `name` (UI.cookie's) under the name for the request's scheme
    (browser_name). Path=/ and no Domain, as the `__Host-` prefix requires."""
    # A Secure cookie is not sent back over plain http (e.g. http://127.0.0.1 in development),
    # so the flag follows the scheme the page was served with, as the name does.
    https = served_over_https(request.scope)
    response.set_cookie(
        browser_name(name, https=https),
        value,
        max_age=max_age,
        path="/",
        secure=https,
        httponly=True,
        samesite="lax",
    )


def clear_cookie(request: Request, response: Response, name: str) -> None:
    """Make the browser forget the cookie `name` (set with set_cookie: the same path and
    flags)."""
    set_cookie(request, response, name, "", 0)


def form_text(form: FormData, name: str) -> str:
    """A text field of a form, trimmed; "" when missing or not text."""
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def address_path(request: Request) -> str:
    """The path of `request` as the browser sent it, percent-encoded: the address to come back
    to after sign-in, and the one a kept form is sealed to. Starlette's request.url.path is
    decoded, and a contact id's "%2F" (agent_pages.contact_url) made from it came back as "/",
    another contact's address."""
    raw = request.scope.get("raw_path")
    return raw.decode("latin-1") if raw else request.url.path


def safe_next(target: str | None, default: str) -> str:
    """Only a local path may be a redirect target after sign-in (no open redirect)."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return default
