"""Administrator pages: domains (settings, statistics, and the integrations a deleted object type
disabled), API credentials (each shown with the domains it may act on, auth.scope; created for
every domain or for some existing ones once the administrator has typed their password again:
ui.password_confirm; one key per form, however often it is sent: ui.submissions; deleted after a
confirmation step, as a DLQ purge and a merge undo are, and the password again);
web users' pages are in ui.user_pages."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from openprofiles.auth import credentials as creds
from openprofiles.auth.scope import checked_scope
from openprofiles.context import Tx
from openprofiles.domains import service as domains
from openprofiles.errors import BadRequest, NotFound
from openprofiles.integrations import service as integrations
from openprofiles.integrations.models import Integration
from openprofiles.ui import password_confirm, submissions
from openprofiles.ui.web import UI, form_text
from openprofiles.users.models import ROLES

DOMAIN_PAGE = 100
CONFIRM_DELETE = (
    "Tick the box to confirm: a deleted credential cannot be brought back, and programs that "
    "sign with it are refused."
)
# The credential form's choice of domains (`scope`): every domain, or those ticked (`domains`).
EVERY_DOMAIN = "all"
SOME_DOMAINS = "some"
NO_DOMAIN_TICKED = "Tick at least one domain, or choose every domain."
# The credential form's one-time token (ui.submissions), as the profile create form's.
SUBMISSION_FIELD = "submission"
# A new key's role unless the administrator chooses: the one that may do less.
DEFAULT_ROLE = "agent"


def all_domain_names(tx: Tx, only: Collection[str] | None = None) -> list[str]:
    """The name of every domain (of `only`'s, when given: a scope), in name order, a page at a
    time: the domains a credential may be limited to, and every page's list of domains to
    choose from. A list cut at its first page never offered the domains after it."""
    names: list[str] = []
    after: str | None = None
    while True:
        records, more = domains.list_domains(tx, after=after, limit=DOMAIN_PAGE, only=only)
        names += [r.name for r in records]
        if not more or not records:
            return names
        after = records[-1].name


def chosen_domains(form: FormData) -> tuple[str, list[str]]:
    """The credential form's choice of domains: the `scope` radio's value (EVERY_DOMAIN when
    missing) and the names ticked, which only SOME_DOMAINS uses."""
    choice = form_text(form, "scope") or EVERY_DOMAIN
    ticked = [v.strip() for v in form.getlist("domains") if isinstance(v, str) and v.strip()]
    return choice, ticked


def disabled_integrations(tx: Tx, domain_name: str) -> list[Integration]:
    """The domain's integrations DeleteProfileObjectType disabled: they bring nothing in (their
    records go to the dead-letter queue), and the API has no member that says so."""
    found: list[Integration] = []
    after: str | None = None
    while True:
        items, more = integrations.list_integrations(
            tx, domain_name=domain_name, after=after, limit=DOMAIN_PAGE
        )
        found += [i for i in items if i.disabled_reason]
        if not more or not items:
            return found
        after = items[-1].uri


def routes(ui: UI) -> list[Route]:
    @ui.page("admin")
    async def admin_home(request: Request) -> Response:
        return RedirectResponse("/admin/domains", status_code=303)

    @ui.page("admin")
    async def domain_list(request: Request) -> Response:
        after = request.query_params.get("after") or None

        def load(tx: Tx) -> tuple[list[dict[str, Any]], str | None]:
            records, more = domains.list_domains(tx, after=after, limit=DOMAIN_PAGE)
            rows = [
                {"record": r, "stats": domains.domain_stats(tx, domain_name=r.name)}
                for r in records
            ]
            return rows, (records[-1].name if more and records else None)

        rows, next_after = await ui.read(load)
        return ui.render(request, "admin/domains.html", rows=rows, next_after=next_after)

    @ui.page("admin")
    async def domain_detail(request: Request) -> Response:
        name = request.path_params["name"]

        def load(tx: Tx) -> dict[str, Any]:
            record = domains.get_domain(tx, domain_name=name)
            return {
                "record": record,
                "stats": domains.domain_stats(tx, domain_name=name),
                "disabled": disabled_integrations(tx, name),
            }

        return ui.render(request, "admin/domain.html", **(await ui.read(load)))

    async def render_credentials(
        request: Request,
        *,
        issued: creds.IssuedCredential | None = None,
        error: str = "",
        scope_error: str = "",
        refused: password_confirm.Refusal | None = None,
        created_before: str = "",
    ) -> Response:
        """The credentials page; `issued`: the key just created, its secret shown this once;
        `created_before`: the id of the key this very form created when it was sent before."""

        def load(tx: Tx) -> tuple[list[creds.CredentialInfo], list[str]]:
            return creds.list_credentials(tx), all_domain_names(tx)

        items, domain_names = await ui.read(load)
        # A refused form comes back as it was filled in; a new one, or one done, afresh.
        again = bool(error or scope_error or refused)
        choice, ticked = chosen_domains(request.state.form) if again else (EVERY_DOMAIN, [])
        # A refused form keeps its token (it created nothing); any other gets a new one.
        token = (
            submissions.usable(form_text(request.state.form, SUBMISSION_FIELD)) if again else None
        )
        submission = token or submissions.new_token()
        return password_confirm.form_again(
            ui,
            request,
            "admin/credentials.html",
            refused=refused,
            invalid=again,
            items=items,
            issued=issued,
            error=error,
            scope_error=scope_error,
            role=form_text(request.state.form, "role") if again else DEFAULT_ROLE,
            submission=submission,
            created_before=created_before,
            roles=ROLES,
            domain_names=domain_names,
            scope_choice=choice,
            ticked=set(ticked),
        )

    @ui.page("admin")
    async def credential_list(request: Request) -> Response:
        return await render_credentials(request)

    @ui.page("admin")
    async def credential_create(request: Request) -> Response:
        role = form_text(request.state.form, "role")
        if role not in ROLES:
            return await render_credentials(request, error="Choose the role admin or agent.")
        choice, ticked = chosen_domains(request.state.form)
        if choice not in (EVERY_DOMAIN, SOME_DOMAINS):
            return await render_credentials(request, scope_error="Choose which domains.")
        scope: frozenset[str] | None = None
        if choice == SOME_DOMAINS:
            if not ticked:
                return await render_credentials(request, scope_error=NO_DOMAIN_TICKED)
            try:
                # Checked before the password is: a form refused for its domains costs no
                # password check (create_credential checks the scope again, its own rule).
                scope = checked_scope(ticked)
            except BadRequest as exc:
                return await render_credentials(request, scope_error=exc.message)
        if (refused := await password_confirm.refusal(ui, request)) is not None:
            return await render_credentials(request, refused=refused)
        token = submissions.usable(form_text(request.state.form, SUBMISSION_FIELD))

        def create(tx: Tx) -> creds.IssuedCredential | str:
            """The key created, or the id of the one this form created when sent before."""
            if token is not None:
                earlier = submissions.credential_created_by(tx, token=token)
                if earlier is not None:
                    return earlier
            issued = creds.create_credential(tx, role=role, domains=scope)
            if token is not None:
                submissions.record_credential(tx, token=token, access_key_id=issued.access_key_id)
            return issued

        issued = await ui.write(create)
        if isinstance(issued, str):
            # Sent again (Reload and resend, Back, a double click): no second key, and not the
            # first one's secret either, which is shown only once.
            return await render_credentials(request, created_before=issued)
        # Answered directly (not redirected) so the secret appears once and is never stored.
        return await render_credentials(request, issued=issued)

    async def render_credential_delete(
        request: Request,
        key_id: str,
        *,
        error: str = "",
        refused: password_confirm.Refusal | None = None,
    ) -> Response:
        """The confirmation step: the credential shown with the box to tick and the admin's
        own password to type."""
        items = await ui.read(creds.list_credentials)
        found = next((c for c in items if c.access_key_id == key_id), None)
        if found is None:
            raise NotFound(f"No credential has the access key id {key_id}.")
        return password_confirm.form_again(
            ui,
            request,
            "admin/credential_delete.html",
            refused=refused,
            invalid=bool(error),
            credential=found,
            error=error,
        )

    @ui.page("admin")
    async def credential_delete(request: Request) -> Response:
        key_id = request.path_params["access_key_id"]
        if request.method == "GET":
            return await render_credential_delete(request, key_id)
        if form_text(request.state.form, "confirm") != "yes":
            return await render_credential_delete(request, key_id, error=CONFIRM_DELETE)
        # Asked as for deleting a user: the key's programs are cut off for good, which a session
        # left open, or a stolen cookie, must not be enough for.
        if (refused := await password_confirm.refusal(ui, request)) is not None:
            return await render_credential_delete(request, key_id, refused=refused)
        await ui.write(lambda tx: creds.delete_credential(tx, access_key_id=key_id))
        return RedirectResponse("/admin/credentials", status_code=303)

    return [
        Route("/admin/", admin_home, methods=["GET"]),
        Route("/admin/domains", domain_list, methods=["GET"]),
        Route("/admin/domains/{name}", domain_detail, methods=["GET"]),
        Route("/admin/credentials", credential_list, methods=["GET"]),
        Route("/admin/credentials", credential_create, methods=["POST"]),
        Route(
            "/admin/credentials/{access_key_id}/delete",
            credential_delete,
            methods=["GET", "POST"],
        ),
    ]
