"""Requests under /domains go straight to the API adapter (app._Application); everything else
still goes through Starlette."""

from __future__ import annotations

from starlette.routing import Mount
from starlette.testclient import TestClient

from openprofiles.app import API_SHORTCUT, create_app
from openprofiles.settings import Settings


def test_no_other_route_lives_where_the_shortcut_goes(sqlite_settings: Settings) -> None:
    app = create_app(sqlite_settings)
    try:
        paths = [route.path for route in app.routes if not isinstance(route, Mount)]
        assert "/health" in paths
        assert [p for p in paths if p.startswith(API_SHORTCUT)] == []
    finally:
        app.state.services.database.dispose()


def test_api_and_other_routes_answer_as_before(sqlite_settings: Settings) -> None:
    app = create_app(sqlite_settings)
    try:
        with TestClient(app) as client:
            # Under /domains: the AWS error format, a correct length, and no signature passes.
            response = client.get("/domains/anything")
            assert response.status_code == 403
            assert response.headers["x-amzn-errortype"] == "MissingAuthenticationTokenException"
            assert int(response.headers["content-length"]) == len(response.content)
            assert "Message" in response.json()
            # A path outside it still reaches the API through Starlette's mount.
            response = client.get("/templates")
            assert response.status_code == 403
            assert response.headers["x-amzn-errortype"] == "MissingAuthenticationTokenException"
            # Starlette's own routes.
            assert client.get("/health").json() == {"status": "ok"}
            assert client.get("/ui/", follow_redirects=False).status_code in (200, 303)
    finally:
        app.state.services.database.dispose()
