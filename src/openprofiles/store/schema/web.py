"""Tables of the web pages' sign-in: web users (admins and agents) and their sessions.

Neither holds customer data, but a username is personal data of a member of staff (often their
e-mail address), so it is never stored in clear: a user is known by the blind-index digest of
the username under the system cipher (users.service), which sign-in computes from the name typed,
and the name itself is kept sealed under the system cipher, opened only to show it. A session
refers to its user by that digest. A password is stored only as an Argon2 hash; a session is
stored under a digest of its cookie value, so a copy of the database cannot be replayed as a
cookie. Failed sign-ins are counted per username and per client address (users.throttle), each
known only by its blind-index digest too.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    false,
)

from openprofiles.store.schema.core import metadata
from openprofiles.store.types import UtcDateTime

web_user = Table(
    "web_user",
    metadata,
    # DomainCipher.digest("@webUser", username) of the system cipher.
    Column("username_digest", LargeBinary(16), primary_key=True),
    # {"username": ...} sealed by the system cipher, bound to ("web_user", the digest in hex).
    Column("username_sealed", LargeBinary, nullable=False),
    Column("password_hash", String(255), nullable=False),
    Column("role", String(16), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    # The domains an agent's pages offer and open, a JSON array of names (users.service, as
    # credential.domain_scope is for keys); NULL: every domain. Migration 0044.
    Column("domain_scope", JSON(none_as_null=True), nullable=True),
    # The password was chosen by someone else (the first run's generated one, `users
    # set-password --temporary`): until the user sets their own, the pages offer only the
    # password page (ui.web.UI.page). Migration 0047.
    Column("must_change_password", Boolean, nullable=False, server_default=false()),
)

web_session = Table(
    "web_session",
    metadata,
    # SHA-256 of the cookie value.
    Column("id_digest", LargeBinary(32), primary_key=True),
    Column("username_digest", LargeBinary(16), nullable=False),
    Column("csrf_token", String(64), nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    # When the browser was last seen (to the minute): a session unused for SESSION_IDLE ends.
    # NULL for sessions made before 0026: their start (expires_at - SESSION_LIFETIME) counts.
    Column("last_seen_at", UtcDateTime, nullable=True),
    ForeignKeyConstraint(["username_digest"], ["web_user.username_digest"], ondelete="CASCADE"),
    Index("ix_web_session_username_digest", "username_digest"),
)

signin_throttle = Table(
    "signin_throttle",
    metadata,
    # "user" or "address": what subject_digest is the digest of.
    Column("kind", String(8), primary_key=True),
    # DomainCipher.digest of the username ("@webUser", as web_user's) or of the client address
    # ("@signInAddress") under the system cipher; the same for a name that is no user's.
    Column("subject_digest", LargeBinary(16), primary_key=True),
    # The username's digest, for a username's rows ("user", "pair"): an administrator's new
    # password lifts them all.
    Column("user_digest", LargeBinary(16), nullable=True),
    # Failures since window_start; a failure after the window starts a new one.
    Column("failures", Integer, nullable=False),
    Column("window_start", UtcDateTime, nullable=False),
    # How many times in a row the subject was locked: each lock lasts twice the one before.
    Column("lockouts", Integer, nullable=False),
    Column("locked_until", UtcDateTime),
    # The last failure: a row untouched for a day is forgotten.
    Column("updated_at", UtcDateTime, nullable=False),
    Index("ix_signin_throttle_updated_at", "updated_at"),
    Index("ix_signin_throttle_user", "user_digest"),
)

# A profile-creation form of the agent pages, submitted once (ui.submissions): the form's one-time
# token (its SHA-256) and the profile it created, so that the same form sent again (a double
# click, Back and resend) answers with that profile instead of creating a second one. Rows older
# than a day are deleted when new ones are written. No personal data: ids only.
web_form_submission = Table(
    "web_form_submission",
    metadata,
    Column("domain_name", String(64), primary_key=True),
    Column("submission_digest", LargeBinary(32), primary_key=True),
    Column("profile_id", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    ForeignKeyConstraint(["domain_name"], ["domain.name"], ondelete="CASCADE"),
    Index("ix_web_form_submission_created", "created_at"),
)

# The API credential form's one-time tokens (ui.submissions.credential_created_by): the digest of
# a form's token with the access key id it created, kept a day, so the same form sent again
# (Reload and resend, Back, a double click) creates no second key. Migration 0045.
web_credential_form = Table(
    "web_credential_form",
    metadata,
    Column("submission_digest", LargeBinary(32), primary_key=True),
    Column("access_key_id", String(32), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Index("ix_web_credential_form_created", "created_at"),
)
