"""An installation for a command to work on, as `openprofiles serve` makes on its first start.

Commands other than `serve` create no data dir, keyring or database (cli_support.
require_installation): a test of one first makes the installation it works on."""

from __future__ import annotations

from openprofiles.app import build_services
from openprofiles.settings import Settings


def install(settings: Settings) -> Settings:
    """Make the settings' database (its schema up to date) and keyring; the settings back."""
    build_services(settings).database.dispose()
    return settings
