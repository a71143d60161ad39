"""Deleting an API credential from the admin pages takes a confirmation step, as a DLQ purge and
a merge undo do: the list links to a page that shows the credential with a box to tick, and
nothing is deleted until the box is ticked (and the administrator's own password typed again:
tests/unit/ui/test_ui_admin_password_confirm.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from starlette.testclient import TestClient
from tests.unit.ui.test_ui_admin_ops import PASSWORD, csrf_of, error_at, services_of, signed_in

from openprofiles.auth import credentials as creds
from openprofiles.settings import Settings


@pytest.fixture
def admin(sqlite_settings: Settings) -> Iterator[TestClient]:
    yield from signed_in(sqlite_settings, "admin")


def _key_ids(client: TestClient) -> set[str]:
    with services_of(client).read() as tx:
        return {c.access_key_id for c in creds.list_credentials(tx)}


def test_a_credential_is_deleted_only_once_confirmed(admin: TestClient) -> None:
    with services_of(admin).write() as tx:
        key_id = creds.create_credential(tx, role="agent").access_key_id
    url = f"/admin/credentials/{key_id}/delete"
    listing = admin.get("/admin/credentials").text
    # The list links to the confirmation step; it has no form that deletes at once.
    assert f'href="{url}"' in listing
    assert f'action="{url}"' not in listing

    confirm = admin.get(url)
    assert confirm.status_code == 200
    assert key_id in confirm.text and 'name="confirm"' in confirm.text
    assert key_id in _key_ids(admin)

    token = csrf_of(confirm.text)
    refused = admin.post(url, data={"csrf_token": token})
    assert refused.status_code == 400
    assert "Tick the box" in error_at(refused.text, "confirm")
    assert key_id in _key_ids(admin)

    done = admin.post(url, data={"csrf_token": token, "confirm": "yes", "your_password": PASSWORD})
    assert done.status_code == 303 and done.headers["location"] == "/admin/credentials"
    assert key_id not in _key_ids(admin)


def test_the_confirmation_of_an_unknown_credential_is_a_404(admin: TestClient) -> None:
    response = admin.get("/admin/credentials/AKIDNOSUCHKEY/delete")
    assert response.status_code == 404
    assert "No credential has the access key id AKIDNOSUCHKEY" in response.text


def _list_domains(client: TestClient, issued: creds.IssuedCredential) -> int:
    """The status of a ListDomains call signed with `issued`."""
    url = "http://testserver/domains"
    request = AWSRequest(method="GET", url=url)
    credentials = Credentials(issued.access_key_id, issued.secret_access_key)
    SigV4Auth(credentials, "profile", services_of(client).settings.region).add_auth(request)
    return client.get("/domains", headers=dict(request.headers.items())).status_code


def test_a_deleted_credential_is_refused_at_once_by_the_server_that_deleted_it(
    admin: TestClient,
) -> None:
    """The server caches credentials for 30 s: a key an administrator deleted here, in answer
    to a leak, went on signing requests for up to 30 s after the page said it was deleted."""
    with services_of(admin).write() as tx:
        issued = creds.create_credential(tx, role="admin")
    assert _list_domains(admin, issued) == 200  # now in the server's cache
    url = f"/admin/credentials/{issued.access_key_id}/delete"
    token = csrf_of(admin.get(url).text)
    done = admin.post(url, data={"csrf_token": token, "confirm": "yes", "your_password": PASSWORD})
    assert done.status_code == 303
    assert _list_domains(admin, issued) == 403


def test_a_key_looked_up_while_its_revocation_commits_is_not_cached_again() -> None:
    """Between `forget` and the revoking transaction's commit, a lookup still finds the key:
    it must not go back in the cache for 30 s, or the revocation would wait that long after
    all."""
    cache = creds.SecretCache()
    cache.get("KEY", lambda: ("secret", "admin"))
    cache.forget("KEY")
    assert cache.get("KEY", lambda: ("secret", "admin")) == ("secret", "admin")  # not committed
    assert cache.get("KEY", lambda: None) is None  # committed: looked up again, and gone
