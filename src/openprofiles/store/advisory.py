"""Transaction-scoped advisory locks on PostgreSQL, named by what they serialise, and the one
order in which a transaction takes all its locks.

A lock is named by its parts: a kind, the domain, then what identifies the thing (a key name
and digest, a contact's digest, a match level and digest, an object type's name). Its id is the
first 8 bytes of the SHA-256 of the parts joined by NUL. `take_locks` takes a set of them in one
global order (sorted ids), so two transactions that need overlapping sets queue rather than
deadlock; PostgreSQL releases them at commit or rollback. SQLite has a single writer, which
serialises every write already: there is nothing to take.

Two transactions deadlock when each waits for a lock the other holds; locks taken in one global
order queue instead. Every writer takes its locks in this order:

0. The domain's lock (`integrations.service.lock_domain`): exclusive by DeleteDomain, shared by
   PutIntegration and by TagResource/UntagResource (tags.service), before anything else. Then the
   association lock of a contact-centre instance (`integrations.service.lock_instances`): exclusive
   by an association, before it writes the integration and replays the instance's kept records
   (whose locks follow), and by a dissociation and DeleteDomain; shared by a batch of contact
   records and a contact-start event, for every instance they name, before they look the instances
   up and write anything.
1. Advisory locks on what the request writes, by name: a contact (contacts), the object type (shared
   by an ingestion, by a PutIntegration naming it and by TagResource/UntagResource of its ARN,
   exclusive by its deletion: object_types.lock_object_type), the keys and UNIQUE values of the
   records (ingest.pipeline); each set in one `take_locks`. An integration's Uri and its flow's
   name in the domain (exclusive by PutIntegration, in one `take_locks` right after the object
   types it names and before anything it writes: integrations.service._lock_integration) are
   taken by nothing else.
   The domain's object types as a whole: exclusive by PutProfileObjectType (which checks a
   definition against the others) and DeleteProfileObjectType, shared by AddProfileKey and
   DeleteProfileKey (a key's ContentType must not change under them: profiles.key_reindex),
   each before any other lock of its own (object_types.hold_key_content_types); not for a
   predefined key (`_ctrContactId`, which a page's contact link adds holding profile rows),
   whose ContentType never changes.
   A dead letter's repeat digest (dlq.service.attempt_again) is taken by the dead-lettering
   writer before it looks the letter up, at the point where the letter's unique index made
   two such writers wait already.
2. Profile rows (`profiles.service.lock_profiles`: FOR UPDATE, sorted by id in one statement):
   the profiles the request found, then those they lead to (a merge's survivor:
   `profiles.service.resolve_locked` looks up, locks, and looks again), then the match group
   that an auto-merge may merge with the profile it writes (identity.matching).
3. The match digests that auto-merge adds (`identity.matching._lock_digests`). Holding them, a
   transaction waits for no row: a profile that joined the group meanwhile is locked without
   waiting, and if another writer holds it, the auto-merge steps back to before its digests
   (a savepoint releases them), waits for the row, and takes the digests again.

After step 2, a DeleteProfile takes the domain's kept-apart lock
(identity.service.forget_deleted_profiles) before it reads the undone merges: only deletions
take it, each at that point, holding no row another deletion's holder waits for.

Step 2 runs several statements, so two writers can still meet in opposite orders there (what
one found is in the other's group); PostgreSQL then ends one of them, which store.conflicts
runs again. A transaction that writes several profiles (a batch of records) takes steps 2 and
3 once per profile.
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
