"""The API credentials page and domain scopes (auth.scope): each key is listed with the domains
it may act on ("Every domain", or their names), and a key is created for every domain or for
the existing domains ticked, through auth.credentials' own create (its scope argument). A
choice of some domains with none ticked, or a name that is no domain name, is refused before
the password is checked, and nothing is created. The POST is audit-logged as every page's is.
On SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient
from tests.unit.integrations.integ_helpers import make_domain
from tests.unit.ui.test_ui_user_pages import PASSWORD, csrf_of, signed_in

from openprofiles import audit
from openprofiles.app import create_app
from openprofiles.auth import credentials as creds
from openprofiles.settings import Settings
from openprofiles.users import service as users

DOMAINS = ("care", "other", "sales")


@pytest.fixture
def app(settings: Settings) -> Iterator[Any]:
    built = create_app(settings)
    with built.state.services.write() as tx:
        users.create_user(tx, username="boss", password=PASSWORD, role="admin")
    for name in DOMAINS:
        make_domain(built.state.services, name)
    yield built
    built.state.services.database.dispose()


@pytest.fixture
def audit_lines(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    caplog.set_level(logging.INFO, logger=audit.logger.name)
    return lambda: [r.getMessage() for r in caplog.records if r.name == audit.logger.name]


def stored(app: Any) -> list[creds.CredentialInfo]:
    with app.state.services.read() as tx:
        return creds.list_credentials(tx)


def row_of(html: str, access_key_id: str) -> str:
    match = re.search(rf"<tr>\s*<th scope=\"row\"><code>{access_key_id}</code>.*?</tr>", html, re.S)
    assert match, html
    return match.group(0)


def create(boss: TestClient, **fields: Any) -> Any:
    token = csrf_of(boss.get("/admin/credentials").text)
    return boss.post("/admin/credentials", data={"csrf_token": token, **fields})


def test_each_key_is_listed_with_the_domains_it_may_act_on(app: Any) -> None:
    with app.state.services.write() as tx:
        everywhere = creds.create_credential(tx, role="admin")
        limited = creds.create_credential(tx, role="agent", domains=["sales", "care"])
    page = signed_in(app, "boss").get("/admin/credentials")
    assert page.status_code == 200
    assert '<th scope="col">Domains</th>' in page.text
    assert "<td>Every domain</td>" in row_of(page.text, everywhere.access_key_id)
    assert "<td><bdi>care</bdi>, <bdi>sales</bdi></td>" in row_of(page.text, limited.access_key_id)


def test_a_key_is_created_for_the_domains_ticked_or_for_every_domain(
    app: Any, audit_lines: Callable[[], list[str]]
) -> None:
    boss = signed_in(app, "boss")
    form = boss.get("/admin/credentials").text
    # Every existing domain can be ticked; every domain is the choice made beforehand.
    for name in DOMAINS:
        assert f'name="domains" value="{name}"' in form
    assert re.search(r'name="scope" value="all" checked', form)

    answer = create(
        boss,
        role="agent",
        scope="some",
        domains=["sales", "care"],
        your_password=PASSWORD,
    )
    assert answer.status_code == 200, answer.text
    [made] = stored(app)
    assert (made.role, made.scope) == ("agent", frozenset({"care", "sales"}))
    assert '<dd id="new-scope"><bdi>care</bdi>, <bdi>sales</bdi></dd>' in answer.text
    # Done: the next form is a fresh one, for every domain again.
    assert re.search(r'name="scope" value="all" checked', answer.text)
    assert 'value="care" checked' not in answer.text

    # Ticked boxes count only with "some": "all" makes an unscoped key.
    answer = create(boss, role="admin", scope="all", domains=["care"], your_password=PASSWORD)
    assert answer.status_code == 200, answer.text
    [unscoped] = [c for c in stored(app) if c.access_key_id != made.access_key_id]
    assert (unscoped.role, unscoped.scope) == ("admin", None)
    assert '<dd id="new-scope">Every domain</dd>' in answer.text

    boss_name = users.audit_name(app.state.services.keys.system_cipher(), "boss")
    posts = [line for line in audit_lines() if line.startswith("ui POST /admin/credentials")]
    assert posts == [f"ui POST /admin/credentials user={boss_name} status=200"] * 2


@pytest.mark.parametrize(
    ("ticked", "message"),
    [
        ([], "Tick at least one domain, or choose every domain."),
        (["care", "no such name!"], "&#39;no such name!&#39; is not a domain name"),
    ],
)
def test_a_choice_of_no_domain_or_a_bad_name_is_refused_before_the_password(
    app: Any, ticked: list[str], message: str
) -> None:
    boss = signed_in(app, "boss")
    # A wrong password: not checked (the form is refused first), so not said to be wrong.
    answer = create(
        boss, role="agent", scope="some", domains=ticked, your_password="not my password"
    )
    assert answer.status_code == 400, answer.text
    assert stored(app) == []
    assert 'id="scope-error"' in answer.text and message in answer.text
    assert "This is not your password" not in answer.text
    # The form comes back as it was filled in, the focus on the choice to correct.
    assert re.search(r'value="some" checked[^>]*aria-invalid="true" autofocus', answer.text)
    for name in ticked:
        if name in DOMAINS:
            assert f'value="{name}" checked' in answer.text
    assert '<option value="agent" selected>' in answer.text
