"""Records of the users package."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

ROLES = ("admin", "agent")


@dataclass(frozen=True)
class WebUser:
    username: str
    role: str
    created_at: datetime

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


@dataclass(frozen=True)
class NewSession:
    """A session just created: `token` goes into the cookie and is never stored."""

    token: str
    session: WebSession
