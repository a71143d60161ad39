"""The route table of the web pages, ending with the pages' own "not found": an address under
the pages' prefixes that no page takes (a mistyped link, a page's address with a method it does
not take, like GET /ui/sign-out) gets an HTML page, not the API's JSON error that the API,
mounted at the root, gives every other unknown address. No API path lies under these prefixes
(the model's paths start with /domains, /integrations, /tags, /templates and
/recommender-recipes)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
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
from openprofiles.ui.user_pages import routes as user_routes
from openprofiles.ui.web import STATIC_DIR, UI, hsts

UI_PREFIXES = ("/ui", "/agent", "/admin")
ANY_METHOD = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def ui_routes(services: Services) -> list[BaseRoute]:
    ui = UI(services)

    async def root(_request: Request) -> Response:
        return RedirectResponse("/ui/", status_code=303)

    async def favicon(_request: Request) -> Response:
        # Asked for by browsers (and bookmarks, tabs of non-HTML answers) at this address
        # whatever the page names: a 404 on every page otherwise. A day's caching, as the icon
        # changes with a release at most.
        return FileResponse(
            STATIC_DIR / "favicon.ico",
            media_type="image/x-icon",
            headers={"Cache-Control": "public, max-age=86400"},
        )

    async def not_found(request: Request) -> Response:
        # Signed in or not: the page's header shows the session's navigation when there is one.
        request.state.session = await ui.load_session(request)
        return ui.error_page(
            request,
            404,
            "Page not found",
            "There is no page at this address. Check the address, or go to your start page "
            "and find the page from there.",
        )

    routes: list[BaseRoute] = [
        Route("/", root, methods=["GET"]),
        Route("/favicon.ico", favicon, methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
        *auth_routes(ui),
        *admin_routes(ui),
        *user_routes(ui),
        *enable_routes(ui),
        *merge_routes(ui),
        *match_routes(ui),
        *dlq_routes(ui),
        *integration_routes(ui),
        *agent_routes(ui),
        # Last, so each page above keeps its address for the methods it takes (Starlette's
        # router takes the first full match; a page's address with another method is a
        # partial match, which this full match overrides).
        *(
            Route(path, not_found, methods=ANY_METHOD)
            for prefix in UI_PREFIXES
            for path in (prefix, f"{prefix}/{{rest:path}}")
        ),
    ]
    for route in routes:
        # Every answer of the pages, redirects and static files included, carries
        # Strict-Transport-Security when served over HTTPS (web.hsts). Each route's app, as
        # Starlette's own per-route middleware wraps it: the pages have no router of their own.
        route.app = hsts(route.app)  # type: ignore[attr-defined]
    return routes
