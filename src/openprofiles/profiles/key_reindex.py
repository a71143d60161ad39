"""Re-digesting a key name's stored values when the ContentType in force for it changes.

A `profile_key` row stores the blind-index digest of its value normalised by the key's
ContentType (spec §1.4) as it was when the row was written, while search, DeleteProfileKey,
ListProfileObjects' ObjectFilter and an ingestion's matching normalise by the ContentType in
force when they run. The ContentType of a key name changes when PutProfileObjectType first
defines the key (from STRING, what an undefined key's values are compared as: an AddProfileKey
value written before), when it re-defines the only type that defines it, when
DeleteProfileObjectType removes the last type that defines it (back to STRING), and when a
template-named type is first used (object_types.service). Without a re-digest the values stored
before stop matching: an ingested record makes a second profile instead of landing on the one
that holds its key, and the value can neither be found nor erased through the API.

Design: every `profile_key` row keeps its value sealed (`value_sealed`), so the rows of the key
name are re-digested from their values in the transaction that changes the ContentType, in
pages (`PAGE_ROWS`), whatever their origin (`@explicit`, `@relinked`, `@merge`, an object type's
name). The predefined keys (`_phone`, `_email`, ...: profiles.keys) have fixed ContentTypes and
are never re-digested. Values that become equal under the new normalisation ("Bob@x.com" and
"bob@x.com" once the key is an EMAIL_ADDRESS) keep one row per (profile, origin), as if they had
been written under it. The digests `profile_object_key` holds are not here: they have no sealed
value to start from, so object_types.service refuses a re-definition that would change them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import and_, bindparam, delete, select, tuple_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from openprofiles.context import Tx
from openprofiles.crypto.domain_keys import DomainCipher
from openprofiles.normalize import ContentType
from openprofiles.profiles.keys import PREDEFINED_CONTENT_TYPES
from openprofiles.profiles.service import KEY_TABLE, key_digest, key_record_id, sealed_key_row
from openprofiles.store.in_lists import in_chunks
from openprofiles.store.schema import profile_key

__all__ = ["PAGE_ROWS", "on_key_renormalised", "renormalise_key"]

# Rows read per statement: a key name may have a row on every profile of the domain.
PAGE_ROWS = 500

# Called with (tx, domain name, key name, the new ContentType) after the key's rows were
# re-digested, in the same transaction: for what other packages keep of the key's digests.
on_key_renormalised: list[Callable[[Tx, str, str, ContentType], None]] = []

_COLUMNS = (
    profile_key.c.digest,
    profile_key.c.profile_id,
    profile_key.c.origin,
    profile_key.c.value_sealed,
)
_DELETE_ROW = delete(profile_key).where(
    profile_key.c.domain_name == bindparam("d"),
    profile_key.c.key_name == bindparam("k"),
    profile_key.c.digest == bindparam("g"),
    profile_key.c.profile_id == bindparam("p"),
    profile_key.c.origin == bindparam("o"),
)
_INSERT_ROWS = {
    "sqlite": sqlite_insert(profile_key).on_conflict_do_nothing(),
    "postgresql": pg_insert(profile_key).on_conflict_do_nothing(),
}


def renormalise_key(tx: Tx, *, domain_name: str, key_name: str, content_type: ContentType) -> int:
    """Re-digest every stored value of `key_name` in the domain under `content_type`; returns
    how many rows changed. A no-op for a predefined key (its ContentType never changes).

    The rows are read in primary-key order a page at a time. Two rows of one profile and origin
    can swap places (one's new digest is the other's old one, as when a key goes from
    PHONE_NUMBER to EMAIL_ADDRESS), so a profile with a stale row on the page has all its rows of
    the key re-digested at once: the stale ones deleted, then their new forms inserted, one of
    equal ones kept. A row moved ahead of the cursor is read again and found current."""
    if key_name in PREDEFINED_CONTENT_TYPES:
        return 0
    cipher = tx.cipher(domain_name)
    region = tx.settings.default_phone_region
    of_key = and_(profile_key.c.domain_name == domain_name, profile_key.c.key_name == key_name)
    order = (profile_key.c.digest, profile_key.c.profile_id, profile_key.c.origin)

    def stale(row: Any) -> tuple[bytes, str] | None:
        """(new digest, value) of a row whose digest is not its value's under `content_type`."""
        digest = bytes(row.digest)
        value = cipher.open_record(
            KEY_TABLE, key_record_id(row.profile_id, key_name, digest), bytes(row.value_sealed)
        )["value"]
        wanted = key_digest(cipher, key_name, content_type, value, phone_region=region)
        return None if wanted == digest else (wanted, value)

    changed = 0
    after: tuple[bytes, str, str] | None = None
    while True:
        query = select(*_COLUMNS).where(of_key).order_by(*order).limit(PAGE_ROWS)
        if after is not None:
            query = query.where(tuple_(*order) > tuple_(*after))
        page = tx.conn.execute(query).all()
        if not page:
            break
        last = page[-1]
        after = (bytes(last.digest), last.profile_id, last.origin)
        touched = sorted({row.profile_id for row in page if stale(row) is not None})
        for ids in in_chunks(touched):
            rows = tx.conn.execute(
                select(*_COLUMNS).where(of_key, profile_key.c.profile_id.in_(ids))
            ).all()
            changed += _rewrite(tx, cipher, domain_name, key_name, rows, stale)
    for hook in on_key_renormalised:
        hook(tx, domain_name, key_name, content_type)
    return changed


def _rewrite(
    tx: Tx,
    cipher: DomainCipher,
    domain_name: str,
    key_name: str,
    rows: Sequence[Any],
    stale: Callable[[Any], tuple[bytes, str] | None],
) -> int:
    """Replace the stale rows among `rows` (every row of the key of their profiles) by their
    re-digested forms: all deleted before any is inserted, so a new form never meets a row
    that is itself about to move."""
    removed: list[dict[str, Any]] = []
    added: list[dict[str, Any]] = []
    for row in rows:
        found = stale(row)
        if found is None:
            continue
        digest, value = found
        removed.append(
            {
                "d": domain_name,
                "k": key_name,
                "g": bytes(row.digest),
                "p": row.profile_id,
                "o": row.origin,
            }
        )
        added.append(
            sealed_key_row(cipher, domain_name, row.profile_id, key_name, digest, value, row.origin)
        )
    if removed:
        tx.conn.execute(_DELETE_ROW, removed)
        tx.conn.execute(_INSERT_ROWS[tx.conn.dialect.name], added)
    return len(removed)
