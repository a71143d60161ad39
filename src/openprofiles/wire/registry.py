"""Maps model operation names to handler functions found by their snake_case names.

A handler module defines one function per AWS operation, named after it in snake_case
(`CreateDomain` -> `create_domain`). Only functions DEFINED in a handler module count, so a
service function a handler module merely imports (say `list_domains`) is never mistaken for a
handler.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any

from botocore.model import ServiceModel

Handler = Callable[..., Any]

# Word boundaries: lower/digit followed by upper ("GetDomain"), and the end of an upper-case
# run followed by a capitalised word ("DNSName" -> "dns_name").
_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def snake_case(operation_name: str) -> str:
    return _BOUNDARY.sub("_", operation_name).lower()


def build_registry(
    modules: Iterable[ModuleType], service_model: ServiceModel
) -> dict[str, Handler]:
    """Return {operation name: handler} for every model operation some module implements.

    Raises ValueError when two modules define a handler for the same operation, so a later
    module never silently shadows an earlier one.
    """
    wanted = {snake_case(name): name for name in service_model.operation_names}
    registry: dict[str, Handler] = {}
    owners: dict[str, str] = {}
    for module in modules:
        for function_name, operation in wanted.items():
            function = getattr(module, function_name, None)
            if not inspect.isfunction(function) or function.__module__ != module.__name__:
                continue
            if operation in registry:
                raise ValueError(
                    f"{operation} is implemented twice: {owners[operation]}.{function_name} "
                    f"and {module.__name__}.{function_name}"
                )
            registry[operation] = function
            owners[operation] = module.__name__
    return registry


def unimplemented_operations(
    registry: dict[str, Handler], service_model: ServiceModel
) -> list[str]:
    """Model operations that have no handler, sorted by name."""
    return sorted(name for name in service_model.operation_names if name not in registry)
