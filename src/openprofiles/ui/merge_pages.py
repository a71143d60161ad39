"""Administrator pages of the merge log: a domain's merges, what each moved, and undoing one
(beyond the cloud service, whose merges are irreversible — spec §5.3)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from openprofiles.context import Tx
from openprofiles.domains import service as domains
from openprofiles.identity import service as identity
from openprofiles.ui.web import UI, form_text

DOMAIN_CHOICES = 100


def routes(ui: UI) -> list[Route]:
    @ui.page("admin")
    async def merge_list(request: Request) -> Response:
        chosen = request.query_params.get("domain") or ""

        def load(tx: Tx) -> dict[str, Any]:
            names = [d.name for d in domains.list_domains(tx, after=None, limit=DOMAIN_CHOICES)[0]]
            domain = chosen or (names[0] if names else "")
            items = identity.list_merges(tx, domain_name=domain) if domain else []
            return {"names": names, "domain": domain, "items": items}

        return ui.render(request, "admin/merges.html", **(await ui.read(load)))

    @ui.page("admin")
    async def merge_detail(request: Request) -> Response:
        domain = request.path_params["domain"]
        merge_id = request.path_params["merge_id"]
        merge = await ui.read(
            lambda tx: identity.get_merge(tx, domain_name=domain, merge_id=merge_id)
        )
        return ui.render(request, "admin/merge.html", domain=domain, merge=merge)

    @ui.page("admin")
    async def merge_undo(request: Request) -> Response:
        domain = request.path_params["domain"]
        merge_id = request.path_params["merge_id"]
        if form_text(request.state.form, "confirm") != "yes":
            merge = await ui.read(
                lambda tx: identity.get_merge(tx, domain_name=domain, merge_id=merge_id)
            )
            return ui.render(
                request,
                "admin/merge.html",
                domain=domain,
                merge=merge,
                error="Tick the box to confirm the undo.",
                status=400,
            )
        await ui.write(lambda tx: identity.undo_merge(tx, domain_name=domain, merge_id=merge_id))
        merge = await ui.read(
            lambda tx: identity.get_merge(tx, domain_name=domain, merge_id=merge_id)
        )
        return ui.render(request, "admin/merge.html", domain=domain, merge=merge, undone=True)

    return [
        Route("/admin/merges", merge_list, methods=["GET"]),
        Route("/admin/merges/{domain}/{merge_id}", merge_detail, methods=["GET"]),
        Route("/admin/merges/{domain}/{merge_id}/undo", merge_undo, methods=["POST"]),
    ]
