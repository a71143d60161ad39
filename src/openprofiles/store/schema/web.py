"""Tables of the web pages' sign-in: web users (admins and agents) and their sessions.

Neither holds customer data. A password is stored only as an Argon2 hash; a session is stored
under a digest of its cookie value, so a copy of the database cannot be replayed as a cookie.
"""

from __future__ import annotations

from sqlalchemy import Column, ForeignKeyConstraint, Index, LargeBinary, String, Table

from openprofiles.store.schema.core import metadata
from openprofiles.store.types import UtcDateTime

web_user = Table(
    "web_user",
    metadata,
    Column("username", String(64), primary_key=True),
    Column("password_hash", String(255), nullable=False),
    Column("role", String(16), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

web_session = Table(
    "web_session",
    metadata,
    # SHA-256 of the cookie value.
    Column("id_digest", LargeBinary(32), primary_key=True),
    Column("username", String(64), nullable=False),
    Column("csrf_token", String(64), nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    ForeignKeyConstraint(["username"], ["web_user.username"], ondelete="CASCADE"),
    Index("ix_web_session_username", "username"),
)
