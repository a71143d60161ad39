"""Administrator pages of the merge log: a domain's merges, what each moved, and undoing one
(beyond the cloud service, whose merges are irreversible — spec §5.3). A merge made from a
match's page (ui.match_pages) leads here, to the merge it made, once told so (`MERGED`)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from openprofiles.context import Tx
from openprofiles.identity import service as identity
from openprofiles.ui import flash
from openprofiles.ui.admin_pages import all_domain_names
from openprofiles.ui.web import UI, form_text, show_profiles

# The confirmation (ui.flash) a merge made from a match's page leaves for its merge's page.
MERGED = "merged"


def merge_url(domain: str, merge_id: str) -> str:
    """The address of a merge's page (where its undo is)."""
    return f"/admin/merges/{quote(domain, safe='')}/{quote(merge_id, safe='')}"


def routes(ui: UI) -> list[Route]:
    @ui.page("admin")
    async def merge_list(request: Request) -> Response:
        chosen = request.query_params.get("domain") or ""

        def load(tx: Tx) -> dict[str, Any]:
            names = all_domain_names(tx)
            domain = chosen or (names[0] if names else "")
            items = identity.list_merges(tx, domain_name=domain) if domain else []
            return {"names": names, "domain": domain, "items": items}

        return ui.render(request, "admin/merges.html", **(await ui.read(load)))

    @ui.page("admin", shows_personal_data=True)
    async def merge_detail(request: Request) -> Response:
        domain = request.path_params["domain"]
        merge_id = request.path_params["merge_id"]
        merge = await ui.read(
            lambda tx: identity.get_merge(tx, domain_name=domain, merge_id=merge_id)
        )
        done = flash.take(ui, request, page=merge_url(domain, merge_id))
        show_profiles(request, [merge.main_profile_id, *merge.merged_profile_ids])
        response = ui.render(
            request, "admin/merge.html", domain=domain, merge=merge, merged=MERGED in done
        )
        if done:
            flash.clear(ui, request, response)
        return response

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
