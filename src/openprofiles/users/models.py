"""Records of the users package.

A web user's `domains` (its domain scope, users.service) is None for every domain, as every user
had before scopes existed; else the domains whose customers its agent pages offer and open."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

ROLES = ("admin", "agent")


@dataclass(frozen=True)
class WebUser:
    username: str
    role: str
    created_at: datetime
    # The domains the user may see (None: every domain); only an agent has a scope.
    domains: frozenset[str] | None = None
    # Its password was chosen by someone else: the pages ask for a new one (users.service).
    must_change_password: bool = False

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True)
class WebSession:
    """A signed-in browser: who, the CSRF token its forms carry, and when it ends."""

    username: str
    role: str
    csrf_token: str
    expires_at: datetime
    # Whether its last activity should be recorded now (users.service.touch_session).
    touch_due: bool = False
    # The user's domain scope, read with the role on each request (users.service.get_session),
    # so a change applies from the user's next request. None: every domain.
    domains: frozenset[str] | None = None
    # The user's password was chosen by someone else (the first run's, an administrator's
    # temporary one): the pages offer only the password page until they choose their own.
    must_change_password: bool = False

    def allows(self, domain_name: str) -> bool:
        """Whether the user may see the domain's customers (ui.agent_pages)."""
        return self.domains is None or domain_name in self.domains


@dataclass(frozen=True)
class NewSession:
    """A session just created: `token` goes into the cookie and is never stored."""

    token: str
    session: WebSession
