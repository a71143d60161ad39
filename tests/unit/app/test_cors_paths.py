"""Only the API's own paths answer browsers' CORS checks (app._cross_origin): the API is
mounted at the root, and so also receives the requests no page route takes (OPTIONS on a page,
the contact feeds, unknown paths), which must grant no other origin anything."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

import pytest
from starlette.testclient import TestClient

from openprofiles.app import create_app
from openprofiles.settings import Settings

DESK = "https://desk.example.com"
TAGGED_ARN = "arn:aws:profile:us-east-1:123456789012:domains/acme"


@pytest.fixture
def client(tmp_path) -> Iterator[TestClient]:
    app = create_app(Settings(data_dir=tmp_path / "data", cors_origins=(DESK,)))
    try:
        with TestClient(app) as client:
            yield client
    finally:
        app.state.services.database.dispose()


def preflight(client: TestClient, path: str, origin: str = DESK) -> dict[str, str]:
    response = client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,x-amz-date,content-type",
        },
    )
    return {"status": str(response.status_code), **response.headers}


@pytest.mark.parametrize(
    "path",
    [
        "/domains/acme",
        "/domains/acme/profiles/objects",
        "/domains/acme/profiles/objects/batch-put-profile-object",
        # A label with an encoded '/' (TagResource): matched on the raw path.
        "/tags/" + quote(TAGGED_ARN, safe=""),
        "/domains",
    ],
)
def test_an_api_path_answers_the_preflight_of_an_allowed_origin(
    client: TestClient, path: str
) -> None:
    answer = preflight(client, path)
    assert answer["status"] == "200"
    assert answer["access-control-allow-origin"] == DESK
    assert "POST" in answer["access-control-allow-methods"]


def test_an_api_path_refuses_an_origin_not_listed(client: TestClient) -> None:
    answer = preflight(client, "/domains/acme", origin="https://other.example")
    assert answer["status"] == "400"
    assert "access-control-allow-origin" not in answer


@pytest.mark.parametrize(
    "path",
    [
        "/ui/sign-in",
        "/ui/",
        "/admin/enable",
        "/agent/contacts/c-1",
        "/health",
        "/contact-records",
        "/contact-events",
        "/no/such/path",
    ],
)
def test_other_paths_grant_no_cors(client: TestClient, path: str) -> None:
    answer = preflight(client, path)
    assert answer["status"] != "200"
    assert not [name for name in answer if name.startswith("access-control-")], answer
    # Nor does a plain cross-origin request get the page's answer shared with the other site.
    response = client.get(path, headers={"Origin": DESK}, follow_redirects=False)
    assert "access-control-allow-origin" not in response.headers


def test_a_signed_api_request_from_an_allowed_origin_exposes_its_headers(
    client: TestClient,
) -> None:
    # Unsigned, so refused: the refusal is still readable by the page, with its request id.
    response = client.get("/domains", headers={"Origin": DESK})
    assert response.status_code == 403
    assert response.headers["access-control-allow-origin"] == DESK
    assert "x-amzn-RequestId" in response.headers["access-control-expose-headers"]
