"""`openprofiles users create` and the first web admin that `make run` creates."""

from __future__ import annotations

import stat

from click.testing import CliRunner
from tests.support.installation import install

from openprofiles.app import build_services
from openprofiles.cli import main
from openprofiles.first_run import ensure_first_web_admin
from openprofiles.settings import Settings
from openprofiles.users import service as users


def test_users_create_with_password_stdin(sqlite_settings: Settings) -> None:
    install(sqlite_settings)
    data_dir = str(sqlite_settings.data_dir)
    runner = CliRunner()
    result = runner.invoke(
        main,
        [
            "users",
            "create",
            "--data-dir",
            data_dir,
            "--username",
            "ana",
            "--role",
            "agent",
            "--password-stdin",
        ],
        input="a good password\n",
    )
    assert result.exit_code == 0, result.output
    assert "Created the agent user ana" in result.output
    again = runner.invoke(
        main,
        [
            "users",
            "create",
            "--data-dir",
            data_dir,
            "--username",
            "ana",
            "--role",
            "agent",
            "--password-stdin",
        ],
        input="a good password\n",
    )
    assert again.exit_code != 0
    assert "already exists" in again.output
    services = build_services(sqlite_settings)
    with services.read() as tx:
        assert users.verify_password(tx, username="ana", password="a good password")


def test_users_create_prompts_twice(sqlite_settings: Settings) -> None:
    install(sqlite_settings)
    result = CliRunner().invoke(
        main,
        [
            "users",
            "create",
            "--data-dir",
            str(sqlite_settings.data_dir),
            "--username",
            "boss",
            "--role",
            "admin",
        ],
        input="a good password\na good password\n",
    )
    assert result.exit_code == 0, result.output


def test_first_run_creates_one_web_admin(sqlite_settings: Settings) -> None:
    services = build_services(sqlite_settings)
    lines = list(ensure_first_web_admin(services, "http://127.0.0.1:8000"))
    path = sqlite_settings.data_dir / "admin-password"
    password = path.read_text().strip()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # Never printed (serve's output is kept in logs): the lines say where it is.
    assert not any(password in line for line in lines)
    assert any(str(path.resolve()) in line for line in lines)
    assert any("http://127.0.0.1:8000/ui/" in line for line in lines)
    with services.read() as tx:
        assert users.verify_password(tx, username="admin", password=password)
    # A second start creates nothing and prints no password.
    again = list(ensure_first_web_admin(services, "http://127.0.0.1:8000"))
    assert not any(password in line for line in again)
    assert path.read_text().strip() == password
