"""pybars is loaded when a template is first compiled, not when the CLI or the server starts:
building its grammar costs about half a second, which commands that never render a template
(`openprofiles dlq list`, `credentials create`, ...) paid on every run."""

from __future__ import annotations

import subprocess
import sys

_PROBE = """
import sys
import openprofiles.app, openprofiles.cli, openprofiles.ingest.pipeline
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


def test_pybars_loads_with_the_first_template_and_its_errors_still_map() -> None:
    # A fresh interpreter: this test process has imported pybars long ago.
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["False", "x", "TemplateError", "True"]
