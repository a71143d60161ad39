"""Transaction-scoped advisory locks on PostgreSQL, named by what they serialise.

A lock is named by its parts: a kind, the domain, then what identifies the thing (a key name
and digest, a contact's digest, a match level and digest, an object type's name). Its id is the
first 8 bytes of the SHA-256 of the parts joined by NUL. `take_locks` takes a set of them in one
global order (sorted ids), so two transactions that need overlapping sets queue rather than
deadlock; PostgreSQL releases them at commit or rollback. SQLite has a single writer, which
serialises every write already: there is nothing to take.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import TYPE_CHECKING

from sqlalchemy import text

if TYPE_CHECKING:
    from openprofiles.context import Tx

LockName = tuple[str | bytes, ...]

_TAKE = {
    False: text("SELECT pg_advisory_xact_lock(:id)"),
    True: text("SELECT pg_advisory_xact_lock_shared(:id)"),
}


def lock_id(name: LockName) -> int:
    joined = b"\x00".join(p.encode() if isinstance(p, str) else p for p in name)
    return int.from_bytes(hashlib.sha256(joined).digest()[:8], "big", signed=True)


def take_locks(tx: Tx, names: Iterable[LockName], *, shared: bool = False) -> None:
    """Hold the named locks until the transaction ends (exclusively, or `shared` with other
    shared holders); a no-op on SQLite."""
    if tx.services.database.is_sqlite:
        return
    ids = sorted({lock_id(name) for name in names})
    if ids:
        # executemany runs the statements one after another, in this order.
        tx.conn.execute(_TAKE[shared], [{"id": i} for i in ids])
