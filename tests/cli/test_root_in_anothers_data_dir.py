"""A command run as root on an installation its service user's server uses (the keyring is
that user's) stops before writing anything: `keys create` run so left keyring.json root's, and
the server, running as that user, answered every request 500 until the file was given back. An
installation a root server made (a container running as root on a volume another user owns)
is root's to use."""

from __future__ import annotations

import os
import pwd
import shutil

import pytest
from click.testing import CliRunner
from tests.support.installation import install

from openprofiles.cli import main
from openprofiles.settings import Settings

SERVICE_UID = 12345  # no user of this machine: the message names the id
NAMED = pwd.getpwnam("nobody")  # a user of every machine: the message names it


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


def _runuser(monkeypatch: pytest.MonkeyPatch, path: str | None) -> None:
    """Make runuser (util-linux, on Linux) found at `path`, or not at all, whatever this
    machine has."""
    real_which = shutil.which
    monkeypatch.setattr(
        shutil,
        "which",
        lambda cmd, *args, **kwargs: path if cmd == "runuser" else real_which(cmd, *args, **kwargs),
    )


def _refused(settings: Settings, command: list[str]) -> str:
    result = CliRunner().invoke(main, [*command, *_storage(settings)])
    assert result.exit_code == 1, result.output
    assert "this command runs as root" in result.output
    return " ".join(result.output.split())


def test_root_may_not_write_in_the_service_user_s_installation(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(settings)
    if _as_root(monkeypatch):
        os.chown(settings.keyring_path, SERVICE_UID, SERVICE_UID)
    keyring_before = settings.keyring_path.read_bytes()

    for command in (["keys", "create", "--alias", "made-by-root"], ["users", "list"]):
        _refused(settings, command)
    assert settings.keyring_path.read_bytes() == keyring_before


def test_the_advice_keeps_the_settings_that_sudo_u_would_drop(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It said `sudo -u USER openprofiles ...`: sudo resets the environment, so the
    OPENPROFILES_* variables of the deployment's settings file were gone and the command it
    advised read another installation, or none."""
    install(settings)
    if _as_root(monkeypatch):
        os.chown(settings.keyring_path, NAMED.pw_uid, NAMED.pw_gid)
        name = NAMED.pw_name
    else:
        name = pwd.getpwuid(os.getuid()).pw_name
    _runuser(monkeypatch, "/usr/sbin/runuser")
    message = _refused(settings, ["users", "list"])
    assert f"belongs to the user {name} (its keyring's owner)" in message
    assert (
        "Run it as that user with this command's settings: "
        f"`runuser -u {name} -- openprofiles ...` keeps its environment (`sudo -u USER "
        "openprofiles ...` drops the OPENPROFILES_* variables" in message
    )
    # The deployment docs/operations.md describes has its own way, which reads the settings file.
    assert "`openprofiles-admin ...`" in message

    # Without runuser (not Linux), sudo told to keep the environment.
    _runuser(monkeypatch, None)
    message = _refused(settings, ["users", "list"])
    assert f"`sudo --preserve-env -u {name} openprofiles ...` keeps its environment" in message


def test_an_owner_without_a_name_is_named_by_its_id(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(settings)
    if _as_root(monkeypatch):
        os.chown(settings.keyring_path, SERVICE_UID, SERVICE_UID)
    else:  # this user has a name: made to have none

        def no_such_user(uid: int) -> pwd.struct_passwd:
            raise KeyError(uid)

        monkeypatch.setattr(pwd, "getpwuid", no_such_user)
    owner = settings.keyring_path.stat().st_uid
    _runuser(monkeypatch, "/usr/sbin/runuser")  # which takes a name only
    message = _refused(settings, ["users", "list"])
    assert f"belongs to the user with the id {owner} (its keyring's owner)" in message
    assert f"`sudo --preserve-env -u '#{owner}' openprofiles ...` keeps its environment" in message


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
