"""The route table of the web pages."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from openprofiles.context import Services
from openprofiles.ui.admin_pages import routes as admin_routes
from openprofiles.ui.agent_pages import routes as agent_routes
from openprofiles.ui.auth_pages import routes as auth_routes
from openprofiles.ui.dlq_pages import routes as dlq_routes
from openprofiles.ui.enable_wizard import routes as enable_routes
from openprofiles.ui.integration_pages import routes as integration_routes
from openprofiles.ui.match_pages import routes as match_routes
from openprofiles.ui.merge_pages import routes as merge_routes
from openprofiles.ui.web import STATIC_DIR, UI


def ui_routes(services: Services) -> list[BaseRoute]:
    ui = UI(services)

    async def root(_request: Request) -> Response:
        return RedirectResponse("/ui/", status_code=303)

    return [
        Route("/", root, methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
        *auth_routes(ui),
        *admin_routes(ui),
        *enable_routes(ui),
        *merge_routes(ui),
        *match_routes(ui),
        *dlq_routes(ui),
        *integration_routes(ui),
        *agent_routes(ui),
    ]
