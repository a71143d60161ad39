"""`keys disable` and `keys enable` as their sibling `keys` commands are run: with the server's
--data-dir and --database-url (both backends), and naming `alias/NAME` when a key's alias was
given bare; the commands they say to run next name the same installation.

A newcomer review: they took no --database-url ("No such option" for the command line every
other command takes), and `keys disable openprofiles-default` answered only "There is no key
openprofiles-default"."""

from __future__ import annotations

import json
import shlex

from click.testing import CliRunner, Result
from tests.support.installation import install

from openprofiles.cli import main
from openprofiles.settings import Settings


def _keys(settings: Settings, *args: str) -> Result:
    storage = ["--data-dir", str(settings.data_dir)]
    if settings.database_url:
        storage += ["--database-url", settings.database_url]
    return CliRunner().invoke(main, ["keys", *args, *storage])


def _enabled(settings: Settings, alias: str) -> bool:
    listed = _keys(settings, "list", "--json")
    assert listed.exit_code == 0, listed.output
    [key] = [k for k in json.loads(listed.output) if k["Alias"] == alias]
    return bool(key["Enabled"])


def test_disable_and_enable_take_the_servers_storage_options(settings: Settings) -> None:
    install(settings)
    created = _keys(settings, "create", "--alias", "billing")
    assert created.exit_code == 0, created.output

    disabled = _keys(settings, "disable", "alias/billing")
    assert disabled.exit_code == 0, disabled.output
    assert not _enabled(settings, "billing")
    enabled = _keys(settings, "enable", "alias/billing")
    assert enabled.exit_code == 0, enabled.output
    assert _enabled(settings, "billing")


def test_a_bare_alias_is_answered_with_its_alias_form(settings: Settings) -> None:
    install(settings)
    for command in (["disable"], ["enable"], ["rotate", "--no-rewrap"]):
        refused = _keys(settings, *command, "openprofiles-default")
        assert refused.exit_code == 1, refused.output
        message = " ".join(refused.output.split())
        assert "There is no key openprofiles-default in the keyring" in message
        assert "Did you mean alias/openprofiles-default?" in message
    # A name that is no key's alias either: nothing to suggest.
    unknown = _keys(settings, "disable", "nosuch")
    assert unknown.exit_code == 1
    assert "There is no key nosuch" in unknown.output and "Did you mean" not in unknown.output
    assert _enabled(settings, "openprofiles-default")


def test_rotate_names_the_next_command_with_the_storage_options_given(settings: Settings) -> None:
    """The command `keys rotate --no-rewrap` says to run next reads the same installation."""
    install(settings)
    staged = _keys(settings, "rotate", "alias/openprofiles-default", "--no-rewrap")
    assert staged.exit_code == 0, staged.output
    storage = ["--data-dir", str(settings.data_dir)]
    if settings.database_url:
        storage += ["--database-url", settings.database_url]
    finish = f"openprofiles keys rotate {shlex.join(storage)} alias/openprofiles-default"
    assert f"`{finish} --rewrap-only`" in " ".join(staged.output.split())
    finished = CliRunner().invoke(main, [*shlex.split(finish)[1:], "--rewrap-only"])
    assert finished.exit_code == 0, finished.output
