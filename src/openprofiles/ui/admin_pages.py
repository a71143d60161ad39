"""Administrator pages: domains (settings, statistics, and the integrations a deleted object type
disabled), API credentials (created once the administrator has typed their password again:
ui.password_confirm; deleted after a confirmation step, as a DLQ purge and a merge undo are);
web users' pages are in ui.user_pages."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from openprofiles.auth import credentials as creds
from openprofiles.context import Tx
from openprofiles.domains import service as domains
from openprofiles.errors import NotFound
from openprofiles.integrations import service as integrations
from openprofiles.integrations.models import Integration
from openprofiles.ui import password_confirm
from openprofiles.ui.web import UI, form_text
from openprofiles.users.models import ROLES

DOMAIN_PAGE = 100
CONFIRM_DELETE = (
    "Tick the box to confirm: a deleted credential cannot be brought back, and programs that "
    "sign with it are refused."
)


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
        refused: password_confirm.Refusal | None = None,
    ) -> Response:
        items = await ui.read(creds.list_credentials)
        page = ui.render(
            request,
            "admin/credentials.html",
            items=items,
            issued=issued,
            error=error,
            password_error=refused.message if refused else "",
            role=form_text(request.state.form, "role") if error or refused else "",
            roles=ROLES,
            status=refused.status if refused else 400 if error else 200,
        )
        return refused.answered(page) if refused else page

    @ui.page("admin")
    async def credential_list(request: Request) -> Response:
        return await render_credentials(request)

    @ui.page("admin")
    async def credential_create(request: Request) -> Response:
        role = form_text(request.state.form, "role")
        if role not in ROLES:
            return await render_credentials(request, error="Choose the role admin or agent.")
        if (refused := await password_confirm.refusal(ui, request)) is not None:
            return await render_credentials(request, refused=refused)
        issued = await ui.write(lambda tx: creds.create_credential(tx, role=role))
        # Answered directly (not redirected) so the secret appears once and is never stored.
        return await render_credentials(request, issued=issued)

    @ui.page("admin")
    async def credential_delete(request: Request) -> Response:
        key_id = request.path_params["access_key_id"]
        if request.method == "GET" or form_text(request.state.form, "confirm") != "yes":
            # The confirmation step: the credential is shown with the box to tick.
            error = CONFIRM_DELETE if request.method == "POST" else ""
            items = await ui.read(creds.list_credentials)
            found = next((c for c in items if c.access_key_id == key_id), None)
            if found is None:
                raise NotFound(f"No credential has the access key id {key_id}.")
            return ui.render(
                request,
                "admin/credential_delete.html",
                status=400 if error else 200,
                credential=found,
                error=error,
            )
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
