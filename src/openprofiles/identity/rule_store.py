"""Where rule-match digests are kept, and the bulk load of a full rule pass.

Two tables hold the same (level, digest) pairs of a profile (openprofiles.identity.rule_digests)
two ways: `rule_match_digest` a row per pair, keyed (domain, level, digest, profile), which finds
a digest's profiles — a match group; `rule_match_profile` a row per profile with its pairs packed
in one value (a level byte, then the digest, per pair), which finds a profile's own pairs to
replace them when it is written and to choose its group. Digests are keyed HMACs, never values.

A full pass (`BulkLoad`) writes the rows of a whole domain in key order: the packed rows into a
temporary table as they are computed, then into `rule_match_profile` and, unpacked by the
database, into `rule_match_digest`, each sorted by the database, so every row lands next to the
previous one instead of at a random place in a large index (profiles are read in the order they
were written, not by id). Staging only the packed rows — one per profile instead of one per pair
(4.6 per profile in the benchmark) — spares the pass's own process most of its statements.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import (
    Column,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    bindparam,
    delete,
    literal,
    select,
    text,
    tuple_,
)

from openprofiles.context import Tx
from openprofiles.crypto.blind_index import DIGEST_SIZE
from openprofiles.identity.rule_digests import PAIR_SIZE, Pair, pack, unpack
from openprofiles.identity.rules import MAX_LEVELS
from openprofiles.profiles import service as profiles
from openprofiles.store.in_lists import in_chunks
from openprofiles.store.many import ManyWriter
from openprofiles.store.schema import rule_match_digest, rule_match_profile

_digest = rule_match_digest.c
_INSERT_DIGESTS = ManyWriter(rule_match_digest.insert())
_INSERT_PROFILES = ManyWriter(rule_match_profile.insert())
_DELETE_DIGESTS = ManyWriter(
    delete(rule_match_digest).where(
        _digest.domain_name == bindparam("domain_name"),
        _digest.level == bindparam("level"),
        _digest.digest == bindparam("digest"),
        _digest.profile_id == bindparam("profile_id"),
    )
)

# The pass's packed rows before they are sorted into rule_match_profile and unpacked into
# rule_match_digest. Temporary: private to the connection, gone with it, never in the main
# database file or its WAL.
_load_packed = Table(
    "rule_match_load_packed",
    MetaData(),
    Column("profile_id", String(32), nullable=False),
    Column("digests", LargeBinary, nullable=False),
    prefixes=["TEMPORARY"],
)
# A staged pass's snapshot: the version of each profile it digested (BulkLoad.catch_up).
_load_version = Table(
    "rule_match_load_version",
    MetaData(),
    Column("profile_id", String(32), primary_key=True),
    Column("version", Integer, nullable=False),
    prefixes=["TEMPORARY"],
)
# The profiles whose staged rows catch_up drops.
_load_stale = Table(
    "rule_match_load_stale",
    MetaData(),
    Column("profile_id", String(32), primary_key=True),
    prefixes=["TEMPORARY"],
)
_LOAD_TABLES = (_load_packed, _load_version)

# The staged packed rows unpacked into rule_match_digest, in its key order: a pair every
# PAIR_SIZE bytes, a level byte then the digest. SQLite has no function from a byte to an
# integer, so the level is the byte's position in the string of the bytes 1 to MAX_LEVELS
# (levels are numbered from 1, rules.py); its offsets come from a recursive CTE up to the
# longest packed value. The WITH goes inside the INSERT: SQLite's driver reports no row count
# for a statement that starts with WITH.
_LEVEL_BYTES = "x'" + bytes(range(1, MAX_LEVELS + 1)).hex() + "'"
_UNPACK_SQLITE = f"""
INSERT INTO {rule_match_digest.name} (domain_name, level, digest, profile_id)
WITH RECURSIVE pair(at) AS (
    SELECT 1 UNION ALL SELECT at + {PAIR_SIZE} FROM pair WHERE at + {PAIR_SIZE} <= :longest
)
SELECT :domain_name, instr({_LEVEL_BYTES}, substr(p.digests, pair.at, 1)),
       substr(p.digests, pair.at + 1, {DIGEST_SIZE}), p.profile_id
FROM {_load_packed.name} AS p JOIN pair ON pair.at < length(p.digests)
ORDER BY 2, 3, 4
"""
_UNPACK_POSTGRESQL = f"""
INSERT INTO {rule_match_digest.name} (domain_name, level, digest, profile_id)
SELECT :domain_name, get_byte(p.digests, pair.at),
       substring(p.digests FROM pair.at + 2 FOR {DIGEST_SIZE}), p.profile_id
FROM {_load_packed.name} AS p
CROSS JOIN LATERAL generate_series(0, length(p.digests) - 1, {PAIR_SIZE}) AS pair(at)
ORDER BY 2, 3, 4
"""
_INSERT_LOAD_STALE = ManyWriter(_load_stale.insert())
_INSERT_LOAD_PACKED = ManyWriter(_load_packed.insert())
_INSERT_LOAD_VERSION = ManyWriter(_load_version.insert())


def held(tx: Tx, domain_name: str, profile_ids: Sequence[str]) -> dict[str, list[Pair]]:
    """The stored pairs of each of `profile_ids` that has any."""
    c = rule_match_profile.c
    out: dict[str, list[Pair]] = {}
    for chunk in in_chunks(profile_ids):
        for row in tx.conn.execute(
            select(c.profile_id, c.digests).where(
                c.domain_name == domain_name, c.profile_id.in_(chunk)
            )
        ):
            out[row.profile_id] = unpack(bytes(row.digests))
    return out


def store(tx: Tx, domain_name: str, profile_id: str, pairs: Collection[Pair]) -> None:
    """Record a profile's pairs (it has none stored: `forget` them first)."""
    if not pairs:
        return
    _INSERT_DIGESTS.execute(
        tx.conn,
        [
            {"domain_name": domain_name, "level": lv, "digest": d, "profile_id": profile_id}
            for lv, d in pairs
        ],
    )
    _INSERT_PROFILES.execute(
        tx.conn, [{"domain_name": domain_name, "profile_id": profile_id, "digests": pack(pairs)}]
    )


def forget(tx: Tx, domain_name: str, profile_ids: Sequence[str]) -> dict[str, list[Pair]]:
    """Remove the stored pairs of `profile_ids`; returns them (as `held`)."""
    removed = held(tx, domain_name, profile_ids)
    rows = [
        {"domain_name": domain_name, "level": lv, "digest": d, "profile_id": pid}
        for pid, pairs in removed.items()
        for lv, d in pairs
    ]
    if not rows:
        return removed
    _DELETE_DIGESTS.execute(tx.conn, rows)
    c = rule_match_profile.c
    for chunk in in_chunks(profile_ids):
        tx.conn.execute(
            delete(rule_match_profile).where(c.domain_name == domain_name, c.profile_id.in_(chunk))
        )
    return removed


def clear(tx: Tx, domain_name: str) -> None:
    """Remove every stored pair of the domain."""
    tx.conn.execute(delete(rule_match_digest).where(_digest.domain_name == domain_name))
    tx.conn.execute(
        delete(rule_match_profile).where(rule_match_profile.c.domain_name == domain_name)
    )


def clear_some(tx: Tx, domain_name: str, limit: int) -> int:
    """Remove up to `limit` stored rows of the domain (digest rows first, then packed rows);
    returns how many went, 0 when none was left."""
    for table in (rule_match_digest, rule_match_profile):
        key = [column for column in table.primary_key.columns]
        some = select(*key).where(table.c.domain_name == domain_name).limit(limit)
        removed = tx.conn.execute(delete(table).where(tuple_(*key).in_(some))).rowcount
        if removed:
            return int(removed)
    return 0


class BulkLoad:
    """The pairs of a whole domain, added chunk by chunk, written by `finish` after `clear`.

    Its rows wait in temporary tables of the connection, so a pass may add them in one
    transaction and finish in another on the same connection (Services.pinned): digest a
    snapshot while only reading, then `catch_up` with the profiles written since and finish
    in a short write transaction."""

    def __init__(self, tx: Tx, domain_name: str) -> None:
        self._domain_name = domain_name
        # The longest packed value added: how far finish's unpacking reaches (an upper bound:
        # catch_up may drop the row it came from), kept here rather than read by a scan of the
        # staged rows inside the write transaction.
        self._longest = 0
        for table in _LOAD_TABLES:
            table.drop(tx.conn, checkfirst=True)
            table.create(tx.conn)

    def add(self, tx: Tx, packed: Sequence[tuple[str, bytes]]) -> None:
        """Add profiles' pairs as (profile id, packed pairs) rows (rule_digests.pack)."""
        _INSERT_LOAD_PACKED.execute_tuples(tx.conn, ("profile_id", "digests"), packed)
        self._longest = max(self._longest, *(len(value) for _, value in packed), 0)

    def add_versions(self, tx: Tx, versions: Sequence[tuple[str, int]]) -> None:
        """Record the versions of the profiles digested (for `catch_up`)."""
        _INSERT_LOAD_VERSION.execute_tuples(tx.conn, ("profile_id", "version"), versions)

    def catch_up(self, tx: Tx) -> list[str]:
        """Drop what was added for profiles written since their version was recorded (changed,
        merged away, deleted); returns the live profiles to digest again (changed or new)."""
        live = profiles.live_versions(tx, domain_name=self._domain_name)
        v = _load_version.c
        seen: dict[str, int] = {
            r[0]: r[1] for r in tx.conn.execute(select(v.profile_id, v.version))
        }
        changed = [pid for pid, version in live.items() if seen.get(pid) != version]
        stale = [*changed, *(pid for pid in seen if pid not in live)]
        if stale:
            # One statement per table, each matching against all the stale ids at once: the
            # staged rows have no index by profile, so a statement per id would scan them all.
            _load_stale.create(tx.conn)
            _INSERT_LOAD_STALE.execute_tuples(tx.conn, ("profile_id",), [(p,) for p in stale])
            ids = select(_load_stale.c.profile_id)
            for table in _LOAD_TABLES:
                tx.conn.execute(delete(table).where(table.c.profile_id.in_(ids)))
            _load_stale.drop(tx.conn)
        return changed

    def finish(self, tx: Tx) -> int:
        """Write what was added (after `clear`); returns how many pairs."""
        conn = tx.conn
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            # Helper threads for the sorts (4.6 million digest rows for a million profiles);
            # the connection goes back to the pool without them.
            conn.exec_driver_sql("PRAGMA threads = 4")
        try:
            packed = _load_packed.c
            domain = literal(self._domain_name, String(64))
            params: dict[str, Any] = {"domain_name": self._domain_name}
            if sqlite:
                params["longest"] = self._longest
            unpack_sql = _UNPACK_SQLITE if sqlite else _UNPACK_POSTGRESQL
            stored = conn.execute(text(unpack_sql), params).rowcount
            conn.execute(
                rule_match_profile.insert().from_select(
                    ["domain_name", "profile_id", "digests"],
                    select(domain, packed.profile_id, packed.digests).order_by(packed.profile_id),
                )
            )
        finally:
            if sqlite:
                conn.exec_driver_sql("PRAGMA threads = 0")
        self.discard(tx)
        return int(stored)

    def discard(self, tx: Tx) -> None:
        """Drop what was added (the temporary tables)."""
        for table in _LOAD_TABLES:
            table.drop(tx.conn, checkfirst=True)
