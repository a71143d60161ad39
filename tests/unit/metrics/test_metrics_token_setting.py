"""OPENPROFILES_METRICS_TOKEN (Settings.metrics_token): read like every setting, refused when it
could not be sent in a header or is short enough to guess, and, a secret unlike the others, never
shown: not in the settings' repr, not in the error that refuses it."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from openprofiles.cli import main
from openprofiles.settings import Settings

TOKEN = "0123456789abcdef0123456789abcdef"


def test_the_variable_sets_the_token_and_the_repr_hides_it() -> None:
    settings = Settings.from_env({"OPENPROFILES_METRICS_TOKEN": TOKEN})
    assert settings.metrics_token == TOKEN
    assert TOKEN not in repr(settings)
    assert Settings.from_env({}).metrics_token is None
    assert Settings.from_env({"OPENPROFILES_METRICS_TOKEN": ""}).metrics_token is None


@pytest.mark.parametrize(
    "token",
    [
        "short-secret",  # under 16 characters
        f"{TOKEN}\n",  # a line end from a file read as written
        f"{TOKEN[:8]} {TOKEN[8:]}",
        f"{TOKEN}é",
    ],
)
def test_a_token_that_cannot_serve_is_refused_without_being_shown(
    token: str, tmp_path: Path
) -> None:
    result = CliRunner().invoke(
        main,
        ["credentials", "list", "--data-dir", str(tmp_path)],
        env={"OPENPROFILES_METRICS_TOKEN": token},
    )
    assert result.exit_code != 0
    assert "OPENPROFILES_METRICS_TOKEN must be at least 16 characters" in result.output
    assert token.strip()[:8] not in result.output
