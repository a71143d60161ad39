"""The first run's admin: audited or not made at all, and its password file retired by every
way of setting `admin`'s password.

`serve --first-run-admin` (first_run) opens the audit log's file before it makes the admin
credential and the web user `admin`: one that cannot be opened refuses the first run with
nothing made, so the next start offers it again. Once `admin` has a new password, whichever way
it was set (its own password page, another administrator's page for it, `users set-password`,
users.service.set_password itself), DATA_DIR/admin-password is deleted after the commit; a file
that still opens the account (set to the same password) is kept, and a change rolled back
deletes nothing."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from tests.unit.ui.test_ui_user_pages import (
    NEW_PASSWORD,
    PASSWORD,
    client_of,
    csrf_of,
    sign_in_answer,
    signed_in,
    user_link,
)

from openprofiles.app import build_services, create_app
from openprofiles.auth.credentials import list_credentials
from openprofiles.cli import main
from openprofiles.context import Services
from openprofiles.first_run import (
    ADMIN_PASSWORD_FILE,
    CREDENTIALS_FILE,
    WEB_ADMIN,
    ensure_first_admin,
    ensure_first_web_admin,
)
from openprofiles.settings import Settings
from openprofiles.users import service as users

ENDPOINT = "http://127.0.0.1:8000"


def _made_nothing(services: Services) -> None:
    data_dir = services.settings.data_dir
    with services.read() as tx:
        assert list_credentials(tx) == []
        assert users.list_users(tx) == []
    assert not (data_dir / CREDENTIALS_FILE).exists()
    assert not (data_dir / ADMIN_PASSWORD_FILE).exists()


@pytest.mark.parametrize("first_run", [ensure_first_admin, ensure_first_web_admin])
def test_a_first_run_whose_audit_log_cannot_be_opened_makes_nothing(
    settings: Settings, tmp_path: Path, first_run: Callable[..., Iterator[str]]
) -> None:
    # In a folder that does not exist: no one, root included, can create it there.
    unusable = tmp_path / "no such folder" / "audit.log"
    services = build_services(dataclasses.replace(settings, audit_log=str(unusable)))
    try:
        with pytest.raises(click.ClickException) as refused:
            list(first_run(services, ENDPOINT))
        message = refused.value.format_message()
        assert str(unusable) in message and "OPENPROFILES_AUDIT_LOG" in message
        _made_nothing(services)
    finally:
        services.database.dispose()

    # Once the audit log can be written, the first run makes both, and says so in it.
    audit_log = settings.data_dir / "first-run-audit.log"
    services = build_services(dataclasses.replace(settings, audit_log=str(audit_log)))
    try:
        lines = list(ensure_first_admin(services, ENDPOINT))
    finally:
        services.database.dispose()
    assert any(line.startswith("Created the web user admin") for line in lines)
    assert (settings.data_dir / ADMIN_PASSWORD_FILE).exists()
    trail = audit_log.read_text()
    assert "first-run-admin created credential=" in trail
    assert "first-run-admin created web-user=" in trail


@pytest.fixture
def app(settings: Settings) -> Iterator[object]:
    """A server whose first start made `admin`, and another administrator."""
    built = create_app(settings)
    services = built.state.services
    list(ensure_first_web_admin(services, ENDPOINT))
    with services.write() as tx:
        users.create_user(tx, username="boss", password=PASSWORD, role="admin")
    yield built
    services.database.dispose()


def _file(settings: Settings) -> Path:
    return settings.data_dir / ADMIN_PASSWORD_FILE


def _first_password(settings: Settings) -> str:
    return _file(settings).read_text().strip()


def _by_own_page(app: object, settings: Settings) -> None:
    admin = client_of(app)
    assert sign_in_answer(admin, WEB_ADMIN, _first_password(settings)).status_code == 303
    page = admin.get("/ui/password")
    answer = admin.post(
        "/ui/password",
        data={
            "csrf_token": csrf_of(page.text),
            "current_password": _first_password(settings),
            "new_password": NEW_PASSWORD,
            "new_password_confirm": NEW_PASSWORD,
        },
    )
    assert answer.status_code == 303


def _by_another_admins_page(app: object, settings: Settings) -> None:
    boss = signed_in(app, "boss")
    manage = user_link(boss, WEB_ADMIN, "Manage")
    answer = boss.post(
        f"{manage}/password",
        data={
            "csrf_token": csrf_of(boss.get(manage).text),
            "new_password": NEW_PASSWORD,
            "new_password_confirm": NEW_PASSWORD,
            "your_password": PASSWORD,
        },
    )
    assert answer.status_code == 303


def _by_cli(app: object, settings: Settings) -> None:
    common = ["--data-dir", str(settings.data_dir)]
    if settings.database_url:
        common += ["--database-url", settings.database_url]
    result = CliRunner().invoke(
        main,
        ["users", "set-password", WEB_ADMIN, "--password-stdin", *common],
        input=NEW_PASSWORD,
    )
    assert result.exit_code == 0, result.output
    assert f"Deleted {_file(settings)}" in result.output


def _by_the_service(app: object, settings: Settings) -> None:
    with app.state.services.write() as tx:  # type: ignore[attr-defined]
        users.set_password(tx, username=WEB_ADMIN, password=NEW_PASSWORD)


@pytest.mark.parametrize(
    "change", [_by_own_page, _by_another_admins_page, _by_cli, _by_the_service]
)
def test_every_way_of_setting_admins_password_deletes_the_file(
    app: object, settings: Settings, change: Callable[[object, Settings], None]
) -> None:
    assert _file(settings).exists()
    change(app, settings)
    assert not _file(settings).exists()
    signed_in(app, WEB_ADMIN, NEW_PASSWORD)


def test_another_users_new_password_leaves_the_file(app: object, settings: Settings) -> None:
    with app.state.services.write() as tx:  # type: ignore[attr-defined]
        users.set_password(tx, username="boss", password=NEW_PASSWORD)
    assert _file(settings).exists()


def test_the_same_password_set_again_keeps_the_file(app: object, settings: Settings) -> None:
    # `users set-password --temporary` with the file's own password: the file still opens it.
    first = _first_password(settings)
    common = ["--data-dir", str(settings.data_dir)]
    if settings.database_url:
        common += ["--database-url", settings.database_url]
    result = CliRunner().invoke(
        main,
        ["users", "set-password", WEB_ADMIN, "--temporary", "--password-stdin", *common],
        input=first,
    )
    assert result.exit_code == 0, result.output
    assert "Deleted" not in result.output
    assert _first_password(settings) == first
    answer = sign_in_answer(client_of(app), WEB_ADMIN, first)
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/password"


def test_a_change_rolled_back_keeps_the_file(app: object, settings: Settings) -> None:
    class Abandoned(Exception):
        pass

    with pytest.raises(Abandoned), app.state.services.write() as tx:  # type: ignore[attr-defined]
        users.set_password(tx, username=WEB_ADMIN, password=NEW_PASSWORD)
        raise Abandoned
    assert _file(settings).exists()
    signed_in(app, WEB_ADMIN, _first_password(settings))
