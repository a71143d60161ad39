"""Administrator pages of integrations: each domain's integrations and flows (with the last run
of each flow, "Run now" and delete), and contact-centre instance association (listing and moving
an instance between domains, with the contact-record template its records are ingested as).

Everything goes through openprofiles.integrations.service, openprofiles.flows.service (and
flows.runs), openprofiles.contacts.service and openprofiles.contacts.sweep.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from openprofiles.contacts import service as contacts
from openprofiles.contacts import sweep
from openprofiles.context import Tx
from openprofiles.domains import service as domains
from openprofiles.errors import BadRequest, NotFound
from openprofiles.flows import runs as flow_runs
from openprofiles.flows import service as flows
from openprofiles.flows.models import FlowRun, parse_flow_definition
from openprofiles.integrations import service as integrations
from openprofiles.integrations.models import Integration, is_instance_arn
from openprofiles.ui import flash, instance_templates
from openprofiles.ui.admin_pages import all_domain_names
from openprofiles.ui.web import UI, form_text

PAGE = 100
ARN_EXAMPLE = "arn:aws:connect:us-east-1:123456789012:instance/1d908e11-3d5f-4cfb-b34d-1e7e0f216898"


class FieldError(Exception):
    """A form field's problem found inside a transaction (raised so that it rolls back)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def move_needed(owner: str, target: str) -> str:
    """What to do about an instance that another domain holds: the pages' own "Move" box (the
    service's message names the command-line option instead)."""
    return (
        f"The instance is associated with domain {owner} now. Tick the box to move it to "
        f"{target}; its existing profiles and contact history stay in {owner}."
    )


@dataclass(frozen=True)
class IntegrationRow:
    integration: Integration
    kind: str
    trigger_type: str
    last_run: FlowRun | None


def _row(tx: Tx, found: Integration) -> IntegrationRow:
    if found.is_instance:
        return IntegrationRow(found, "Contact-centre instance", "", None)
    definition = found.flow_definition
    if found.flow_name is None or definition is None:
        return IntegrationRow(found, "Other", "", None)
    try:
        # Read as the watcher reads a stored definition (flows.triggers.run_if_due).
        trigger = parse_flow_definition(definition, stored=True).trigger_type
    except BadRequest:
        trigger = "unreadable definition"
    runs = flow_runs.list_runs(
        tx, domain_name=found.domain_name, flow_name=found.flow_name, limit=1
    )
    return IntegrationRow(found, "Flow", trigger, runs[0] if runs else None)


def integrations_url(domain_name: str, **query: Any) -> str:
    url = f"/admin/domains/{quote(domain_name, safe='')}/integrations"
    given = {k: v for k, v in query.items() if v not in (None, "")}
    return url + ("?" + urlencode(given) if given else "")


def routes(ui: UI) -> list[Route]:
    @ui.page("admin")
    async def overview(request: Request) -> Response:
        def load(tx: Tx) -> list[dict[str, Any]]:
            rows = []
            for name in all_domain_names(tx):
                items, more = integrations.list_integrations(
                    tx, domain_name=name, after=None, limit=PAGE
                )
                rows.append(
                    {
                        "name": name,
                        "count": f"{len(items)}+" if more else str(len(items)),
                        "flows": sum(1 for i in items if i.flow_name),
                        "instances": sum(1 for i in items if i.is_instance),
                    }
                )
            return rows

        return ui.render(request, "admin/integrations_overview.html", rows=await ui.read(load))

    async def render_list(
        request: Request, name: str, *, status: int = 200, **extra: Any
    ) -> Response:
        after = request.query_params.get("after") or None

        def load(tx: Tx) -> dict[str, Any]:
            domains.get_domain(tx, domain_name=name)
            items, more = integrations.list_integrations(
                tx, domain_name=name, after=after, limit=PAGE
            )
            return {
                "rows": [_row(tx, i) for i in items],
                "next_after": items[-1].uri if more and items else None,
            }

        return ui.render(
            request,
            "admin/integrations.html",
            status=status,
            domain=name,
            **(await ui.read(load)),
            **extra,
        )

    @ui.page("admin")
    async def integration_list(request: Request) -> Response:
        name = request.path_params["name"]
        query = request.query_params
        ran: FlowRun | None = None
        if query.get("run"):
            run_id = query["run"]
            try:
                ran = await ui.read(
                    lambda tx: flow_runs.get_run(tx, domain_name=name, run_id=run_id)
                )
            except NotFound:
                ran = None
        # "Deleted the integration ..." after the deletion only, once (ui.flash): never from a
        # link, which could show any text as deleted.
        page = integrations_url(name)
        done = flash.take(ui, request, page=page)
        deleted = flash.take_details(ui, request, page=page).get("uri", "")
        shown = await render_list(
            request,
            name,
            ran=ran,
            deleted=deleted if flash.INTEGRATION_DELETED in done else "",
        )
        if done:
            flash.clear(ui, request, shown)
        return shown

    @ui.page("admin")
    async def run_now(request: Request) -> Response:
        name = request.path_params["name"]
        flow_name = form_text(request.state.form, "flow_name")
        # run_flow opens its own transactions (a run's progress is visible while it runs).
        run = await ui.run(
            lambda: flows.run_flow(ui.services, domain_name=name, flow_name=flow_name)
        )
        return RedirectResponse(integrations_url(name, run=run.run_id), status_code=303)

    @ui.page("admin")
    async def delete_confirm(request: Request) -> Response:
        name = request.path_params["name"]
        if request.method == "GET":
            uri = request.query_params.get("uri", "")
            found = await ui.read(
                lambda tx: integrations.get_integration(tx, domain_name=name, uri=uri)
            )
            return ui.render(
                request, "admin/integration_delete.html", domain=name, item=found, error=""
            )
        form = request.state.form
        uri = form_text(form, "uri")
        found = await ui.read(
            lambda tx: integrations.get_integration(tx, domain_name=name, uri=uri)
        )
        if form_text(form, "confirm") != "yes":
            return ui.render(
                request,
                "admin/integration_delete.html",
                status=400,
                domain=name,
                item=found,
                error="Tick the box to confirm the deletion.",
            )
        await ui.write(lambda tx: integrations.delete_integration(tx, domain_name=name, uri=uri))
        page = integrations_url(name)
        response = RedirectResponse(page, status_code=303)
        flash.confirm(
            ui,
            request,
            response,
            page=page,
            done=[flash.INTEGRATION_DELETED],
            details={"uri": uri},
        )
        return response

    async def render_instances(
        request: Request,
        *,
        values: dict[str, str],
        errors: dict[str, str] | None = None,
        done: dict[str, Any] | None = None,
    ) -> Response:
        def load(tx: Tx) -> dict[str, Any]:
            names = all_domain_names(tx)
            return {"names": names, "items": integrations.list_instances(tx)}

        return ui.render(
            request,
            "admin/instances.html",
            status=400 if errors else 200,
            values=values,
            errors=errors or {},
            done=done,
            example=ARN_EXAMPLE,
            template_options=instance_templates.OPTIONS,
            **(await ui.read(load)),
        )

    @ui.page("admin")
    async def instance_list(request: Request) -> Response:
        instance = request.query_params.get("instance", "")
        values = {
            "instance_arn": instance if is_instance_arn(instance) else "",
            instance_templates.FIELD: "",
            "move": "",
        }
        if values["instance_arn"]:
            # "Change domain" from a row: the move box starts ticked, with its warning beside it,
            # and the template the instance uses now starts chosen (a move would otherwise set
            # it back to the default without a word).
            values["move"] = "yes"
            current = await ui.read(
                lambda tx: integrations.find_instance_integration(tx, instance_arn=instance)
            )
            if current is not None and current.object_type_name in instance_templates.VALUES:
                values[instance_templates.FIELD] = current.object_type_name
        return await render_instances(request, values=values)

    @ui.page("admin")
    async def instance_associate(request: Request) -> Response:
        form = request.state.form
        values = {
            "instance_arn": form_text(form, "instance_arn"),
            "domain_name": form_text(form, "domain_name"),
            instance_templates.FIELD: form_text(form, instance_templates.FIELD),
            "move": form_text(form, "move"),
        }
        arn, target, move = values["instance_arn"], values["domain_name"], values["move"] == "yes"
        errors: dict[str, str] = {}
        template, template_error = instance_templates.chosen_template(
            values[instance_templates.FIELD]
        )
        if template_error:
            errors[instance_templates.FIELD] = template_error
        if not is_instance_arn(arn):
            errors["instance_arn"] = (
                f"Enter the instance ARN of your contact centre, such as {ARN_EXAMPLE}."
            )
        if not target:
            errors["domain_name"] = "Choose the domain its contact records should go to."
        if errors:
            return await render_instances(request, values=values, errors=errors)

        def associate(tx: Tx) -> dict[str, Any]:
            # A refusal raises, so the transaction rolls back and nothing is changed.
            try:
                domains.get_domain(tx, domain_name=target)
            except NotFound:
                raise FieldError("domain_name", "Choose one of the listed domains.") from None
            owner = integrations.instance_domain(tx, instance_arn=arn)
            if owner == target:
                raise FieldError(
                    "domain_name", f"The instance is already associated with {target}."
                )
            current = integrations.find_instance_integration(tx, instance_arn=arn)
            kept = current.object_type_name if current is not None else None
            if kept in instance_templates.VALUES and template != kept:
                # The blank form offers the default (CTR) whatever the instance uses now; taken
                # as is, a move would change how the new domain finds its callers unasked. The
                # page shown again has the template it uses now chosen.
                values[instance_templates.FIELD] = kept
                if not move:
                    raise FieldError("move", move_needed(owner or "", target))
                raise FieldError(
                    instance_templates.FIELD, instance_templates.keep_on_move(kept, template)
                )
            if owner is not None and not move:
                raise FieldError("move", move_needed(owner, target))
            try:
                done, replayed = contacts.connect_instance(
                    tx, domain_name=target, instance_arn=arn, move=move, object_type_name=template
                )
            except BadRequest as exc:
                raise FieldError("instance_arn", exc.message) from None
            return {
                "instance_arn": arn,
                "domain_name": target,
                "object_type_name": done.integration.object_type_name,
                "previous_domain": done.previous_domain,
                "replayed": replayed.sent_on,
                "replay_rejected": replayed.rejected_for_good,
            }

        try:
            outcome = await ui.write(associate)
        except FieldError as exc:
            return await render_instances(request, values=values, errors={exc.field: exc.message})
        # The association committed with the first chunk of the kept records: the rest now.
        rest = await ui.run(lambda: sweep.send_kept_on(ui.services, instance_arns=[arn]))
        outcome["replayed"] += rest.sent_on
        outcome["replay_rejected"] += rest.rejected_for_good
        return await render_instances(
            request,
            values={"instance_arn": "", instance_templates.FIELD: "", "move": ""},
            done=outcome,
        )

    return [
        Route("/admin/integrations", overview, methods=["GET"]),
        Route("/admin/domains/{name}/integrations", integration_list, methods=["GET"]),
        Route("/admin/domains/{name}/integrations/run", run_now, methods=["POST"]),
        Route("/admin/domains/{name}/integrations/delete", delete_confirm, methods=["GET", "POST"]),
        Route("/admin/instances", instance_list, methods=["GET"]),
        Route("/admin/instances", instance_associate, methods=["POST"]),
    ]
