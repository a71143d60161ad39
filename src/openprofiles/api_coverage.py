"""docs/api-coverage.md, generated from the handler registry against the botocore model.

Regenerate with `python -m openprofiles.api_coverage > docs/api-coverage.md`; a test fails
when the committed file is out of date.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.model import ServiceModel


def render(registry: Mapping[str, Any], model: ServiceModel) -> str:
    names = sorted(model.operation_names)
    done = [n for n in names if n in registry]
    lines = [
        "# API coverage",
        "",
        "Operations of Amazon Connect Customer Profiles (`customer-profiles`, "
        f"{model.api_version}) that OpenProfiles implements. Generated from the handler "
        "registry by `python -m openprofiles.api_coverage`; do not edit by hand.",
        "",
        f"Implemented: {len(done)} of {len(names)} operations. The others answer "
        "`NotImplementedException` (HTTP 501) naming the operation.",
        "",
        "| operation | HTTP | implemented |",
        "| --- | --- | --- |",
    ]
    for name in names:
        http = model.operation_model(name).http
        mark = "yes" if name in registry else "no"
        lines.append(f"| {name} | `{http['method']} {http['requestUri']}` | {mark} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    from openprofiles.app import HANDLER_MODULES
    from openprofiles.wire.model import load_service_model
    from openprofiles.wire.registry import build_registry

    model = load_service_model()
    print(render(build_registry(HANDLER_MODULES, model), model), end="")


if __name__ == "__main__":
    main()
