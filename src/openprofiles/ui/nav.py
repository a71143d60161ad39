"""The administrator's navigation: every admin page, in the order the nav shows them."""

from __future__ import annotations


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
        ("/admin/matches", "Matches"),
    ]
