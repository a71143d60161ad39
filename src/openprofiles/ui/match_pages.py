"""Administrator pages that explain matches: a domain's rule-based matches and ML match groups,
and for one match the rule level and attributes that matched (rule-based, spec §5.1), or each
linking pair's attributes with their Splink comparison levels and weights and the group's
confidence score (ML-based, spec §5.2).

The explanation comes from openprofiles.identity.explain, the same functions the CLI's
`matches explain` and `matches explain-ml` print. Like the CLI, a rule-based match's values are
opened only when the administrator asks for them (`?values=1`, the CLI's --show-values); an ML
explanation never holds values.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from openprofiles.context import Tx
from openprofiles.domains import service as domains
from openprofiles.identity import explain
from openprofiles.ui.web import UI

DOMAIN_CHOICES = 100
PAGE = 50


def routes(ui: UI) -> list[Route]:
    @ui.page("admin")
    async def match_list(request: Request) -> Response:
        query = request.query_params
        chosen = query.get("domain") or ""

        def load(tx: Tx) -> dict[str, Any]:
            names = [d.name for d in domains.list_domains(tx, after=None, limit=DOMAIN_CHOICES)[0]]
            domain = chosen or (names[0] if names else "")
            overview = (
                explain.match_overview(
                    tx,
                    domain_name=domain,
                    limit=PAGE,
                    rule_after=query.get("rule_after") or None,
                    ml_after=query.get("ml_after") or None,
                )
                if domain
                else None
            )
            return {"names": names, "domain": domain, "overview": overview}

        return ui.render(request, "admin/matches.html", **(await ui.read(load)))

    @ui.page("admin")
    async def rule_match(request: Request) -> Response:
        domain = request.path_params["domain"]
        match_id = request.path_params["match_id"]
        with_values = request.query_params.get("values") == "1"
        explained = await ui.read(
            lambda tx: explain.explain_rule_match(
                tx, domain_name=domain, match_id=match_id, with_values=with_values
            )
        )
        return ui.render(request, "admin/match_rule.html", domain=domain, explained=explained)

    @ui.page("admin")
    async def ml_match(request: Request) -> Response:
        domain = request.path_params["domain"]
        match_id = request.path_params["match_id"]
        explained = await ui.read(
            lambda tx: explain.explain_ml_match(tx, domain_name=domain, match_id=match_id)
        )
        return ui.render(request, "admin/match_ml.html", domain=domain, explained=explained)

    return [
        Route("/admin/matches", match_list, methods=["GET"]),
        Route("/admin/matches/{domain}/rule/{match_id}", rule_match, methods=["GET"]),
        Route("/admin/matches/{domain}/ml/{match_id}", ml_match, methods=["GET"]),
    ]
