"""A command's error message shows the control characters of what it quotes (a name given on the
command line, read back in "There is no key NAME") escaped, as Python's repr writes them, and
every other character as it is.

A fuzz run: `keys disable $'x\\e]0;pwned\\a'` retitled the operator's terminal, an ESC [ sequence
could hide or repaint what was on it, and `credentials delete $'x\\nError: ...'` wrote a second,
forged line into a log of the command's output. Escaped once, where every error passes
(cli_support.EscapedErrors), not at each message."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from tests.support.installation import install

from openprofiles.cli import main
from openprofiles.settings import Settings

# A name with what a terminal or a log reader acts on: ESC sequences (an OSC that sets the
# window title, ended by BEL; a CSI that clears the screen, in its 7-bit and C1 forms), a line
# end that starts a forged line, DEL, the line separator and a right-to-left override; and
# letters of other scripts, which stay as they are.
NAME = "Zoë-名前\x1b]0;pwned\x07\x1b[2J\x9b2J\r\nError: forged\x7f\u2028\u202etxt.exe"
SHOWN = "Zoë-名前\\x1b]0;pwned\\x07\\x1b[2J\\x9b2J\\r\\nError: forged\\x7f\\u2028\\u202etxt.exe"


def _invoke(args: list[str]) -> Result:
    # color=True: click would otherwise take the CSI sequences out itself (no terminal), which
    # it does not do on a terminal, nor to the others anywhere.
    return CliRunner().invoke(main, args, color=True)


def _escaped(result: Result, exit_code: int) -> str:
    assert result.exit_code == exit_code, result.output
    assert "Traceback" not in result.output
    # Nothing a terminal acts on: the output's only control characters are its own line ends.
    for line in result.output.splitlines():
        assert line.isprintable(), repr(line)
    assert result.output.count("forged") == 1
    assert not any(line.startswith("Error: forged") for line in result.output.splitlines())
    return result.output


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    install(Settings(data_dir=tmp_path))
    return tmp_path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        # The keyring's message.
        (["keys", "disable", NAME], f"Error: There is no key {SHOWN} in the keyring"),
        (["keys", "enable", NAME], f"Error: There is no key {SHOWN} in the keyring"),
        # A service's (auth.credentials).
        (["credentials", "delete", NAME], f"Error: No credential has the access key id {SHOWN}."),
        (
            ["credentials", "scope", NAME, "--all-domains"],
            f"Error: No credential has the access key id {SHOWN}.",
        ),
        (["users", "set-role", NAME, "agent"], f"Error: There is no user named {SHOWN}"),
    ],
    ids=["keys disable", "keys enable", "credentials delete", "credentials scope", "users"],
)
def test_a_refusal_quotes_a_name_with_its_control_characters_escaped(
    data_dir: Path, args: list[str], message: str
) -> None:
    output = _escaped(_invoke([*args, "--data-dir", str(data_dir)]), 1)
    assert message in output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        # click's own messages, for the root's command line and a group's.
        ([NAME], f"Error: No such command '{SHOWN}'."),
        (["keys", NAME], f"Error: No such command '{SHOWN}'."),
        (["keys", "list", NAME], f"Error: Got unexpected extra argument ({SHOWN})"),
        (["--" + NAME], f"Error: No such option '--{SHOWN}'"),
    ],
    ids=["command", "group's command", "extra argument", "option"],
)
def test_a_usage_error_quotes_what_it_was_given_escaped(args: list[str], message: str) -> None:
    output = _escaped(_invoke(args), 2)
    assert message in output


def test_shown_text_escapes_control_characters_only() -> None:
    from openprofiles.cli_support import shown_text

    assert shown_text(NAME) == SHOWN
    # Every C0 and C1 control and DEL, as repr writes it.
    for code in [*range(0x20), *range(0x7F, 0xA0)]:
        char = chr(code)
        assert unicodedata.category(char) == "Cc"
        assert shown_text(f"a{char}b") == f"a{repr(char)[1:-1]}b"
    # Printable text of any script, and the joiners some scripts' words need, unchanged.
    for text in ("plain", "Zoë Ødegård", "名前", "имя", "اسم", "👩\u200d💻", "a\u00a0b", "x'\"\\y"):
        assert shown_text(text) == text
