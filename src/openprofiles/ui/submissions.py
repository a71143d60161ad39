"""A profile-creation form creates one profile, however often it is sent.

The create form carries a one-time token (`new_token`, a hidden field). The transaction that
creates the profile records the token's digest with the profile's id (`record`); the same form
sent again (a double click, Back and resend, a second tab) finds it (`created_by`) and shows
that profile (the one it was merged into, if it was) instead of creating a second one of the
same customer; a form whose profile was deleted since makes one again. Two sends at once: both
insert the same primary key; the loser's transaction fails on it and runs again
(store.conflicts), and then finds the winner's. Rows are kept a day.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import delete, insert, select

from openprofiles.context import Tx
from openprofiles.domains.service import register_domain_table
from openprofiles.store.schema import web_form_submission

register_domain_table(web_form_submission)

KEPT_FOR = timedelta(days=1)
# Longest token accepted from a form (new_token's are 22 characters).
MAX_TOKEN_CHARS = 64


def new_token() -> str:
    return secrets.token_urlsafe(16)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def usable(token: str | None) -> str | None:
    """The form's token, or None for a form without a usable one (sent by a script)."""
    if token and 0 < len(token) <= MAX_TOKEN_CHARS:
        return token
    return None


def created_by(tx: Tx, *, domain_name: str, token: str) -> str | None:
    """The id of the profile this form already created in the domain, if it did."""
    return tx.conn.execute(
        select(web_form_submission.c.profile_id).where(
            web_form_submission.c.domain_name == domain_name,
            web_form_submission.c.submission_digest == _digest(token),
        )
    ).scalar()


def forget(tx: Tx, *, domain_name: str, token: str) -> None:
    """Forget the form's profile (it was deleted since)."""
    tx.conn.execute(
        delete(web_form_submission).where(
            web_form_submission.c.domain_name == domain_name,
            web_form_submission.c.submission_digest == _digest(token),
        )
    )


def record(tx: Tx, *, domain_name: str, token: str, profile_id: str) -> None:
    """Remember, in the transaction that created it, which profile the form created."""
    tx.conn.execute(
        delete(web_form_submission).where(web_form_submission.c.created_at < tx.now - KEPT_FOR)
    )
    tx.conn.execute(
        insert(web_form_submission).values(
            domain_name=domain_name,
            submission_digest=_digest(token),
            profile_id=profile_id,
            created_at=tx.now,
        )
    )
