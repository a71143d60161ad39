"""Which optional features are installed, checked at run time.

Some pages show features built by other packages (contact history and other objects, instance
association); they appear only when that package exists, never as stubs.
"""

from __future__ import annotations

import importlib
import importlib.util
from functools import cache
from types import ModuleType


def _module(name: str) -> ModuleType | None:
    try:
        if importlib.util.find_spec(name) is None:
            return None
    except ModuleNotFoundError:
        return None
    return importlib.import_module(name)


@cache
def objects_service() -> ModuleType | None:
    """openprofiles.objects.service when it offers listing, counting and reading a profile's
    objects."""
    module = _module("openprofiles.objects.service")
    needed = ("list_profile_objects", "count_objects_by_type", "find_object")
    if module is None or not all(hasattr(module, name) for name in needed):
        return None
    return module


@cache
def integrations_service() -> ModuleType | None:
    """openprofiles.integrations.service when it can associate a contact-centre instance."""
    module = _module("openprofiles.integrations.service")
    if module is None or not hasattr(module, "associate_instance"):
        return None
    return module


def admin_nav() -> list[tuple[str, str]]:
    """(path, label) of the administrator's pages."""
    return [
        ("/admin/domains", "Domains"),
        ("/admin/enable", "Enable customer profiles"),
        ("/admin/dlq", "Dead letters"),
        ("/admin/integrations", "Integrations"),
        ("/admin/instances", "Instances"),
        ("/admin/credentials", "API credentials"),
        ("/admin/users", "Users"),
        ("/admin/merges", "Merges"),
    ]
