"""A command run as root on an installation its service user's server uses (the keyring is
that user's) stops before writing anything: `keys create` run so left keyring.json root's, and
the server, running as that user, answered every request 500 until the file was given back. An
installation a root server made (a container running as root on a volume another user owns)
is root's to use."""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner
from tests.support.installation import install

from openprofiles.cli import main
from openprofiles.settings import Settings

SERVICE_UID = 12345  # no user of this machine: the message names the id


def _storage(settings: Settings) -> list[str]:
    storage = ["--data-dir", str(settings.data_dir)]
    if settings.database_url:
        storage += ["--database-url", settings.database_url]
    return storage


def _as_root(monkeypatch: pytest.MonkeyPatch) -> bool:
    """Whether this process can give files away (it is root); else it is made to say it is
    root, and every file it owns reads as another user's to the check."""
    if os.geteuid() == 0:
        return True
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    return False


def test_root_may_not_write_in_the_service_user_s_installation(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(settings)
    if _as_root(monkeypatch):
        os.chown(settings.keyring_path, SERVICE_UID, SERVICE_UID)
    keyring_before = settings.keyring_path.read_bytes()

    for command in (["keys", "create", "--alias", "made-by-root"], ["users", "list"]):
        result = CliRunner().invoke(main, [*command, *_storage(settings)])
        assert result.exit_code == 1, result.output
        assert "this command runs as root" in result.output
        assert "Run it as that user: sudo -u" in result.output
    assert settings.keyring_path.read_bytes() == keyring_before


def test_a_root_installation_on_another_user_s_volume_is_root_s_to_use(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(settings)
    if _as_root(monkeypatch):
        # The volume is another user's; the server that made the installation ran as root.
        os.chown(settings.data_dir, SERVICE_UID, SERVICE_UID)
    else:
        monkeypatch.undo()  # no root here to own the installation: this user's own, then
    result = CliRunner().invoke(main, ["users", "list", *_storage(settings)])
    assert result.exit_code == 0, result.output
