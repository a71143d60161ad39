"""Administrator pages: domains (settings, statistics, and the integrations a deleted object type
disabled), API credentials and web users."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from openprofiles.auth import credentials as creds
from openprofiles.context import Tx
from openprofiles.domains import service as domains
from openprofiles.errors import BadRequest
from openprofiles.integrations import service as integrations
from openprofiles.integrations.models import Integration
from openprofiles.ui.web import UI, form_text
from openprofiles.users import service as users
from openprofiles.users.models import ROLES

DOMAIN_PAGE = 100
CREATED_USER_SCOPE = "ui/user-created"


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
        request: Request, *, issued: creds.IssuedCredential | None = None, error: str = ""
    ) -> Response:
        items = await ui.read(creds.list_credentials)
        return ui.render(
            request,
            "admin/credentials.html",
            items=items,
            issued=issued,
            error=error,
            roles=ROLES,
            status=400 if error else 200,
        )

    @ui.page("admin")
    async def credential_list(request: Request) -> Response:
        return await render_credentials(request)

    @ui.page("admin")
    async def credential_create(request: Request) -> Response:
        role = form_text(request.state.form, "role")
        if role not in ROLES:
            return await render_credentials(request, error="Choose the role admin or agent.")
        issued = await ui.write(lambda tx: creds.create_credential(tx, role=role))
        # Answered directly (not redirected) so the secret appears once and is never stored.
        return await render_credentials(request, issued=issued)

    @ui.page("admin")
    async def credential_delete(request: Request) -> Response:
        key_id = request.path_params["access_key_id"]
        await ui.write(lambda tx: creds.delete_credential(tx, access_key_id=key_id))
        return RedirectResponse("/admin/credentials", status_code=303)

    async def render_users(
        request: Request,
        *,
        values: dict[str, str] | None = None,
        errors: dict[str, str] | None = None,
        created: str = "",
    ) -> Response:
        items = await ui.read(users.list_users)
        return ui.render(
            request,
            "admin/users.html",
            items=items,
            values=values or {"role": "agent"},
            errors=errors or {},
            created=created,
            roles=ROLES,
            status=400 if errors else 200,
        )

    @ui.page("admin")
    async def user_list(request: Request) -> Response:
        token = request.query_params.get("created", "")
        try:
            created = ui.services.tokens.decode(CREATED_USER_SCOPE, token)["u"] if token else ""
        except BadRequest:
            created = ""  # only a notice: a changed or old address shows the list without it
        return await render_users(request, created=created)

    @ui.page("admin")
    async def user_create(request: Request) -> Response:
        form = request.state.form
        values = {"username": form_text(form, "username"), "role": form_text(form, "role")}
        password = form.get("password")
        password = password if isinstance(password, str) else ""
        confirm = form.get("password_confirm")
        errors: dict[str, str] = {}
        if (problem := users.check_username(values["username"])) is not None:
            errors["username"] = problem
        if values["role"] not in ROLES:
            errors["role"] = "Choose admin or agent."
        if (problem := users.check_password(password)) is not None:
            errors["password"] = problem
        elif confirm != password:
            errors["password_confirm"] = "The two passwords differ; type the same one twice."
        if not errors:
            try:
                await ui.write(
                    lambda tx: users.create_user(
                        tx, username=values["username"], password=password, role=values["role"]
                    )
                )
            except BadRequest as exc:
                errors["username"] = exc.message
        if errors:
            return await render_users(request, values=values, errors=errors)
        # A username may be a person's name or email: the address carries it sealed.
        token = ui.services.tokens.encode(CREATED_USER_SCOPE, {"u": values["username"]})
        return RedirectResponse(f"/admin/users?created={token}", status_code=303)

    return [
        Route("/admin/", admin_home, methods=["GET"]),
        Route("/admin/domains", domain_list, methods=["GET"]),
        Route("/admin/domains/{name}", domain_detail, methods=["GET"]),
        Route("/admin/credentials", credential_list, methods=["GET"]),
        Route("/admin/credentials", credential_create, methods=["POST"]),
        Route("/admin/credentials/{access_key_id}/delete", credential_delete, methods=["POST"]),
        Route("/admin/users", user_list, methods=["GET"]),
        Route("/admin/users", user_create, methods=["POST"]),
    ]
