"""Every command's options and help, as a newcomer reads them (a newcomer review): the storage
options are the same on every command that has them, and no help text points at what a user of
the package does not have (the specification's sections, Python modules and constants) or says
what a command does not do."""

from __future__ import annotations

import re

import click
from click.testing import CliRunner

from openprofiles.cli import main
from openprofiles.cli_support import commands_of, storage_options


def _help(*path: str) -> str:
    result = CliRunner().invoke(main, [*path, "--help"], terminal_width=1000)
    assert result.exit_code == 0, result.output
    return result.output


def _groups(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += _groups(command, (*path, name))
    return found


def test_every_command_with_a_data_dir_takes_the_shared_storage_options() -> None:
    """`keys disable` and `keys enable` took a --data-dir of their own ("Data directory.", no
    default said) and no --database-url: "No such option" for what the README says every
    command takes."""
    shared = {
        param.name: param for param in storage_options(click.command()(lambda **_: None)).params
    }
    for path, command in commands_of(main):
        params = {param.name: param for param in command.params}
        if "data_dir" not in params:
            continue
        for name, option in shared.items():
            assert name in params, (path, name)
            mine = params[name]
            assert isinstance(mine, click.Option) and isinstance(option, click.Option)
            assert (mine.opts, mine.help, mine.type.name) == (
                option.opts,
                option.help,
                option.type.name,
            ), path
    for command in ("disable", "enable"):
        shown = _help("keys", command)
        assert "Where the SQLite database and the local keyring live (default: .data)" in shown
        assert "--database-url" in shown


# What a help text must not point at: a section of the specification, which is not shipped, and
# a Python module or constant (openprofiles.held_values, dlq.resend.DEFAULT_LIMIT).
_NOT_FOR_USERS = re.compile(r"§|\bspec\b|\b[a-z_]+\.[a-z_]+\.[A-Za-z_]|\bopenprofiles\.[a-z_]")


def test_no_help_points_at_the_spec_or_at_python_modules() -> None:
    texts = [_help(*path) for path in _groups(main)]
    texts += [_help(*path.split()) for path, _ in commands_of(main)]
    for text in texts:
        assert not _NOT_FOR_USERS.search(text), text


def test_help_says_how_matching_values_compare_and_the_resend_default() -> None:
    from openprofiles.dlq.cli import MAX_LIMIT, RESEND_LIMIT
    from openprofiles.dlq.resend import DEFAULT_LIMIT

    for path in (("dlq", "purge"), ("instances", "purge-unrouted")):
        shown = " ".join(_help(*path).split())
        assert "An email address matches in any letter case and a phone number in any" in shown
    assert RESEND_LIMIT == DEFAULT_LIMIT
    # Bounded as `dlq list --limit` is: a larger number stopped a resend with a traceback.
    bounds = f"[default: {DEFAULT_LIMIT}; 1<=x<={MAX_LIMIT}]"
    assert f"Send at most this many records. {bounds}" in " ".join(_help("dlq", "resend").split())
    matches = " ".join(_help("matches").split())
    assert "rule-based matches (the domain's RuleBasedMatching)" in matches


def test_credentials_scope_help_says_what_no_domain_does() -> None:
    """`scope` without --domain is refused (it needs --domain or --all-domains); its help
    said, as `create`'s does, "Without it, every domain"."""
    scope = " ".join(_help("credentials", "scope").split())
    assert "Without it, every domain" not in scope
    assert "These replace the domains it had. Give --domain or --all-domains." in scope
    refused = CliRunner().invoke(main, ["credentials", "scope", "OPEXAMPLE"])
    assert refused.exit_code == 2
    assert "Give --domain (one or more) or --all-domains." in refused.output
    assert "Without it, every domain." in " ".join(_help("credentials", "create").split())
