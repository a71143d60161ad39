"""A command run as root on a data dir its service user owns stops before writing anything:
`keys create` run so left keyring.json root's, and the server, running as that user, answered
every request 500 until the file was given back."""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner
from tests.support.installation import install

from openprofiles.cli import main
from openprofiles.settings import Settings

SERVICE_UID = 12345


def _owned_by_the_service_user(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """The data dir belongs to another user than root, and the command runs as root: made so
    for real when the tests run as root, else by making this process say it is root."""
    if os.geteuid() == 0:
        os.chown(settings.data_dir, SERVICE_UID, SERVICE_UID)
    else:
        monkeypatch.setattr(os, "geteuid", lambda: 0)


def _storage(settings: Settings) -> list[str]:
    storage = ["--data-dir", str(settings.data_dir)]
    if settings.database_url:
        storage += ["--database-url", settings.database_url]
    return storage


def test_root_may_not_write_in_the_service_user_s_data_dir(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(settings)
    keyring_before = settings.keyring_path.read_bytes()
    _owned_by_the_service_user(settings, monkeypatch)

    for command in (["keys", "create", "--alias", "made-by-root"], ["users", "list"]):
        result = CliRunner().invoke(main, [*command, *_storage(settings)])
        assert result.exit_code == 1, result.output
        assert "runs as root" in result.output
        assert "Run it as that user: sudo -u " in result.output
    assert settings.keyring_path.read_bytes() == keyring_before


def test_root_s_own_data_dir_is_left_alone(settings: Settings) -> None:
    install(settings)
    os.chown(settings.data_dir, os.geteuid(), os.getegid())
    result = CliRunner().invoke(main, ["users", "list", *_storage(settings)])
    assert result.exit_code == 0, result.output
