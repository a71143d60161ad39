"""What every CLI command and server start pays before doing anything: importing the app, the
CLI and the pipeline must not do work that only some commands need. pybars' grammar (~0.5 s)
is built with the first template; the Argon2 hash that evens out sign-in timing (~0.1 s) is
made when the sign-in routes are built. Each probe runs in a fresh interpreter, since this test
process imported everything long ago."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

_IMPORTS = "import openprofiles.app, openprofiles.cli, openprofiles.ingest.pipeline\n"


def _probe(code: str) -> list[str]:
    return subprocess.run(
        [sys.executable, "-c", _IMPORTS + code], capture_output=True, text=True, check=True
    ).stdout.split()


def test_pybars_loads_with_the_first_template_and_its_errors_still_map() -> None:
    out = _probe(
        """
import sys
loaded_at_start = "pybars" in sys.modules
from openprofiles.ingest.handlebars import TemplateError, render
rendered = render("{{#if _source.a}}{{_source.a}}{{/if}}", {"a": "x"})
try:
    # Passes the subset check; pybars' own compiler refuses the second {{else}}.
    render("{{#if _source.a}}x{{else}}y{{else}}z{{/if}}", {"a": "x"})
except TemplateError:
    bad = "TemplateError"
print(loaded_at_start, rendered, bad, "pybars" in sys.modules)
"""
    )
    assert out == ["False", "x", "TemplateError", "True"]


def test_the_sign_in_dummy_hash_is_made_by_the_app_not_by_imports(tmp_path: Path) -> None:
    out = _probe(
        f"""
from openprofiles.users.service import dummy_hash
before = dummy_hash.cache_info().currsize
from pathlib import Path
from openprofiles.app import create_app
from openprofiles.settings import Settings
app = create_app(Settings(data_dir=Path({str(tmp_path)!r})))
app.state.services.database.dispose()
print(before, dummy_hash.cache_info().currsize, dummy_hash().startswith("$argon2id$"))
"""
    )
    assert out == ["0", "1", "True"]
