"""Web users' pages: the administrator's users list (create a user; open one to give them a new
password, another role or, an agent, other domains (its domain scope, users.service), or to
delete them after a confirmation step, as a credential delete
and a DLQ purge are; each of these, creating one too, asks the administrator's own password
again: ui.password_confirm), and every signed-in user's own password page: the only page of a
user who must choose their own password (ui.web.UI.page). A new password for the first run's
`admin` deletes its password file, which no longer opens anything (users.set_password does,
after its commit: first_run.retire_first_password).

A username may be a person's name or e-mail address, so no address carries it in clear (ui.web):
a user's pages are addressed by a reference that seals the name (services.tokens), and the
notice shown after a change travels sealed too.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from openprofiles.auth.scope import checked_scope
from openprofiles.errors import BadRequest, NotFound, Throttling
from openprofiles.ui import flash, password_confirm
from openprofiles.ui.admin_pages import (
    EVERY_DOMAIN,
    NO_DOMAIN_TICKED,
    SOME_DOMAINS,
    all_domain_names,
    chosen_domains,
)
from openprofiles.ui.password_checks import (
    BUSY_MESSAGE,
    RETRY_AFTER_SECONDS,
    Busy,
    check_password,
    form_password,
)
from openprofiles.ui.web import PASSWORD_PAGE, UI, form_text
from openprofiles.users import service as users
from openprofiles.users.models import ROLES, WebSession

USER_SCOPE = "ui/user"
NOTICE_SCOPE = "ui/user-notice"
# Every user's own page: change their password (the only one while they must: web.UI.page).
OWN_PASSWORD = PASSWORD_PAGE
# The role form's password field (the password form's is password_confirm.FIELD): one page.
ROLE_PASSWORD = "role_your_password"
# The domains form's password field.
SCOPE_PASSWORD = "scope_your_password"
CONFIRM_DELETE = (
    "Tick the box to confirm: a deleted user cannot be brought back, and their sessions end "
    "at once."
)


def new_password_errors(
    password: str, confirm: str, *, username: str, field: str = "password"
) -> dict[str, str]:
    """What is wrong with `username`'s new password typed twice, by field."""
    if (problem := users.check_password(password, username=username)) is not None:
        return {field: problem}
    if confirm != password:
        return {f"{field}_confirm": "The two passwords differ; type the same one twice."}
    return {}


def routes(ui: UI) -> list[Route]:
    def user_ref(username: str) -> str:
        return ui.services.tokens.encode(USER_SCOPE, {"u": username})

    def username_of(request: Request) -> str:
        try:
            name = ui.services.tokens.decode(USER_SCOPE, request.path_params["ref"])["u"]
        except BadRequest:
            raise NotFound(
                "This address of a user has expired or was changed. Go back to the users list "
                "and open the user from there."
            ) from None
        return str(name)

    def to_list(notice: str) -> Response:
        token = ui.services.tokens.encode(NOTICE_SCOPE, {"n": notice})
        return RedirectResponse(f"/admin/users?notice={token}", status_code=303)

    async def render_list(
        request: Request,
        *,
        values: dict[str, str] | None = None,
        errors: dict[str, str] | None = None,
        notice: str = "",
        refused: password_confirm.Refusal | None = None,
    ) -> Response:
        items = await ui.read(users.list_users)
        if refused is not None:
            errors = {password_confirm.FIELD: refused.message}
        page = ui.render(
            request,
            "admin/users.html",
            items=[(u, user_ref(u.username)) for u in items],
            values=values or {"role": "agent"},
            errors=errors or {},
            notice=notice,
            roles=ROLES,
            status=refused.status if refused else 400 if errors else 200,
        )
        return refused.answered(page) if refused else page

    @ui.page("admin")
    async def user_list(request: Request) -> Response:
        token = request.query_params.get("notice", "")
        try:
            notice = ui.services.tokens.decode(NOTICE_SCOPE, token)["n"] if token else ""
        except BadRequest:
            notice = ""  # only a notice: a changed or old address shows the list without it
        return await render_list(request, notice=notice)

    @ui.page("admin")
    async def user_create(request: Request) -> Response:
        form = request.state.form
        values = {"username": form_text(form, "username"), "role": form_text(form, "role")}
        password = form_password(form, "password")
        errors: dict[str, str] = {}
        if (problem := users.check_username(values["username"])) is not None:
            errors["username"] = problem
        if values["role"] not in ROLES:
            errors["role"] = "Choose admin or agent."
        errors.update(
            new_password_errors(
                password, form_password(form, "password_confirm"), username=values["username"]
            )
        )
        if errors:
            # Checked before the administrator's password is: a form refused for its fields
            # costs no password check.
            return await render_list(request, values=values, errors=errors)
        # A new administrator, with a password of the session's choosing, would be a way round
        # every other password re-confirm: so creating any user asks it too.
        if (refused := await password_confirm.refusal(ui, request)) is not None:
            return await render_list(request, values=values, refused=refused)
        # Argon2 before the write transaction (users.NewPassword says why).
        hashed = await run_in_threadpool(
            lambda: users.new_password(password, username=values["username"])
        )
        try:
            await ui.write(
                lambda tx: users.create_user(
                    tx, username=values["username"], password=hashed, role=values["role"]
                )
            )
        except BadRequest as exc:
            # A name already taken: the administrator's password was right all the same.
            return await render_list(request, values=values, errors={"username": exc.message})
        return to_list(f"Created the user {values['username']}.")

    async def render_user(
        request: Request, username: str, *, errors: dict[str, str] | None = None, status: int = 200
    ) -> Response:
        found, names = await ui.read(
            lambda tx: (users.find_user(tx, username=username), all_domain_names(tx))
        )
        if found is None:
            raise NotFound(f"There is no user named {username}.")
        # The domains form as sent when it is shown again with an error; else the user's scope.
        if errors and ("scope" in errors or SCOPE_PASSWORD in errors):
            choice, ticked = chosen_domains(request.state.form)
        else:
            choice = EVERY_DOMAIN if found.domains is None else SOME_DOMAINS
            ticked = sorted(found.domains or ())
        return ui.render(
            request,
            "admin/user.html",
            status=status,
            user=found,
            ref=request.path_params["ref"],
            roles=ROLES,
            errors=errors or {},
            # A scope may name a domain that does not exist (yet): it is offered too, ticked.
            domain_names=sorted({*names, *(found.domains or ())}),
            scope_choice=choice,
            ticked=ticked,
        )

    async def refused_user(
        request: Request, username: str, field: str = password_confirm.FIELD
    ) -> Response | None:
        """The user's page again when the administrator's password (the form's `field`) was
        not confirmed (ui.password_confirm); None when it was."""
        refused = await password_confirm.refusal(ui, request, field)
        if refused is None:
            return None
        page = await render_user(
            request, username, errors={field: refused.message}, status=refused.status
        )
        return refused.answered(page)

    @ui.page("admin")
    async def user_detail(request: Request) -> Response:
        return await render_user(request, username_of(request))

    @ui.page("admin")
    async def user_password(request: Request) -> Response:
        username = username_of(request)
        form = request.state.form
        password = form_password(form, "new_password")
        errors = new_password_errors(
            password,
            form_password(form, "new_password_confirm"),
            username=username,
            field="new_password",
        )
        if errors:
            return await render_user(request, username, errors=errors, status=400)
        if (refused := await refused_user(request, username)) is not None:
            return refused
        session: WebSession = request.state.session
        # An administrator setting their own password stays signed in here.
        keep = (ui.session_token(request) or None) if username == session.username else None
        hashed = await run_in_threadpool(lambda: users.new_password(password, username=username))
        ended = await ui.write(
            lambda tx: users.set_password(tx, username=username, password=hashed, keep_session=keep)
        )
        sessions = f"{ended} session{'s' if ended != 1 else ''}"
        return to_list(f"Set a new password for {username}; ended {sessions}.")

    @ui.page("admin")
    async def user_scope(request: Request) -> Response:
        """The domains an agent sees: every one, or those ticked (users.set_scope)."""
        username = username_of(request)
        choice, ticked = chosen_domains(request.state.form)
        if choice not in (EVERY_DOMAIN, SOME_DOMAINS):
            return await render_user(
                request, username, errors={"scope": "Choose which domains."}, status=400
            )
        domains: frozenset[str] | None = None
        if choice == SOME_DOMAINS:
            if not ticked:
                return await render_user(
                    request, username, errors={"scope": NO_DOMAIN_TICKED}, status=400
                )
            try:
                # Before the password is checked: a choice that cannot be stored is told at
                # once (set_scope checks it again, with its own rules).
                domains = checked_scope(ticked)
            except BadRequest as exc:
                return await render_user(
                    request, username, errors={"scope": exc.message}, status=400
                )
        if (refused := await refused_user(request, username, SCOPE_PASSWORD)) is not None:
            return refused
        try:
            user = await ui.write(
                lambda tx: users.set_scope(tx, username=username, domains=domains)
            )
        except BadRequest as exc:
            return await render_user(request, username, errors={"scope": exc.message}, status=400)
        shown = "every domain" if user.domains is None else ", ".join(sorted(user.domains))
        return to_list(f"{username} may now see: {shown}.")

    @ui.page("admin")
    async def user_role(request: Request) -> Response:
        username = username_of(request)
        role = form_text(request.state.form, "role")
        if role not in ROLES:
            return await render_user(
                request, username, errors={"role": "Choose admin or agent."}, status=400
            )
        if (refused := await refused_user(request, username, ROLE_PASSWORD)) is not None:
            return refused
        try:
            await ui.write(lambda tx: users.set_role(tx, username=username, role=role))
        except BadRequest as exc:
            return await render_user(request, username, errors={"role": exc.message}, status=400)
        return to_list(f"{username} is now an {role}.")

    @ui.page("admin")
    async def user_delete(request: Request) -> Response:
        username = username_of(request)
        error = ""
        refused: password_confirm.Refusal | None = None
        if request.method == "POST":
            if form_text(request.state.form, "confirm") != "yes":
                error = CONFIRM_DELETE
            elif (refused := await password_confirm.refusal(ui, request)) is None:
                try:
                    await ui.write(lambda tx: users.delete_user(tx, username=username))
                except BadRequest as exc:
                    error = exc.message
                else:
                    return to_list(f"Deleted the user {username}; their sessions have ended.")
        # The confirmation step: the user is shown with the box to tick.
        found = await ui.read(lambda tx: users.find_user(tx, username=username))
        if found is None:
            raise NotFound(f"There is no user named {username}.")
        return password_confirm.form_again(
            ui,
            request,
            "admin/user_delete.html",
            refused=refused,
            invalid=bool(error),
            user=found,
            ref=request.path_params["ref"],
            error=error,
            # A ticked box stays ticked when only the password was wrong.
            ticked=refused is not None,
        )

    def own_page(
        request: Request, errors: dict[str, str], status: int = 200, *, changed: bool = False
    ) -> Response:
        return ui.render(request, "password.html", status=status, errors=errors, changed=changed)

    @ui.page("agent", before_own_password=True)
    async def own_password(request: Request) -> Response:
        if request.method == "GET":
            # "Your password has been changed" after the change only, once (ui.flash): never
            # from a link, which could tell a user it was changed when it was not.
            done = flash.take(ui, request, page=OWN_PASSWORD)
            page = own_page(request, {}, changed=flash.PASSWORD_CHANGED in done)
            if done:
                flash.clear(ui, request, page)
            return page
        form = request.state.form
        session: WebSession = request.state.session
        new = form_password(form, "new_password")
        errors = new_password_errors(
            new,
            form_password(form, "new_password_confirm"),
            username=session.username,
            field="new_password",
        )
        current = form_password(form, "current_password")
        if not errors and (same := users.check_password_change(current, new)) is not None:
            # Said before the current password is checked: it compares two fields as typed.
            errors = {"new_password": same}
        if errors:
            return own_page(request, errors, 400)
        token = ui.session_token(request)
        address = request.client.host if request.client else None
        try:
            # Counted, then Argon2 on its own threads with no write transaction open, at most
            # so many at once (password_checks says why).
            checked = await check_password(
                ui, username=session.username, password=current, address=address
            )
            # The new one is hashed likewise, once the current one is known to be right.
            fresh = (
                await run_in_threadpool(lambda: users.new_password(new, username=session.username))
                if checked.matches
                else new
            )
            changed = await ui.write(
                lambda tx: users.change_own_password(
                    tx,
                    username=session.username,
                    current=current,
                    new=fresh,
                    session=token,
                    address=address,
                    checked=checked,
                )
            )
        except Throttling as exc:
            return own_page(request, {"current_password": exc.message}, 429)
        except Busy:
            busy = own_page(request, {"current_password": BUSY_MESSAGE}, 503)
            busy.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
            return busy
        if not changed:
            return own_page(
                request, {"current_password": "This is not your current password."}, 400
            )
        response = RedirectResponse(OWN_PASSWORD, status_code=303)
        flash.confirm(ui, request, response, page=OWN_PASSWORD, done=[flash.PASSWORD_CHANGED])
        return response

    return [
        Route("/admin/users", user_list, methods=["GET"]),
        Route("/admin/users", user_create, methods=["POST"]),
        Route("/admin/users/{ref}", user_detail, methods=["GET"]),
        Route("/admin/users/{ref}/password", user_password, methods=["POST"]),
        Route("/admin/users/{ref}/role", user_role, methods=["POST"]),
        Route("/admin/users/{ref}/scope", user_scope, methods=["POST"]),
        Route("/admin/users/{ref}/delete", user_delete, methods=["GET", "POST"]),
        Route(OWN_PASSWORD, own_password, methods=["GET", "POST"]),
    ]
