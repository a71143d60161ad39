"""Where rule-match digests are kept, and the bulk load of a full rule pass.

Two tables hold the same (level, digest) pairs of a profile (openprofiles.identity.rule_digests)
two ways: `rule_match_digest` a row per pair, keyed (domain, level, digest, profile), which finds
a digest's profiles — a match group; `rule_match_profile` a row per profile with its pairs packed
in one value (a level byte, then the digest, per pair), which finds a profile's own pairs to
replace them when it is written and to choose its group. Digests are keyed HMACs, never values.

A full pass (`BulkLoad`) writes the rows of a whole domain in key order: into temporary tables
as they are computed, then into `rule_match_digest` and `rule_match_profile` sorted by the
database, so every row lands next to the previous one instead of at a random place in a large
index (profiles are read in the order they were written, not by id).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

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
)

from openprofiles.context import Tx
from openprofiles.identity.rule_digests import Pair, pack, unpack
from openprofiles.store.many import ManyWriter
from openprofiles.store.schema import rule_match_digest, rule_match_profile

_CHUNK = 1000
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

# The pass's digest rows before they are sorted into rule_match_digest. Temporary: private to
# the connection, gone with it, never in the main database file or its WAL.
_load = Table(
    "rule_match_load",
    MetaData(),
    Column("level", Integer, nullable=False),
    Column("digest", LargeBinary, nullable=False),
    Column("profile_id", String(32), nullable=False),
    prefixes=["TEMPORARY"],
)
_load_packed = Table(
    "rule_match_load_packed",
    MetaData(),
    Column("profile_id", String(32), nullable=False),
    Column("digests", LargeBinary, nullable=False),
    prefixes=["TEMPORARY"],
)
_INSERT_LOAD = ManyWriter(_load.insert())
_INSERT_LOAD_PACKED = ManyWriter(_load_packed.insert())


def held(tx: Tx, domain_name: str, profile_ids: Sequence[str]) -> dict[str, list[Pair]]:
    """The stored pairs of each of `profile_ids` that has any."""
    c = rule_match_profile.c
    out: dict[str, list[Pair]] = {}
    for start in range(0, len(profile_ids), 500):
        for row in tx.conn.execute(
            select(c.profile_id, c.digests).where(
                c.domain_name == domain_name,
                c.profile_id.in_(list(profile_ids[start : start + 500])),
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


def forget(tx: Tx, domain_name: str, profile_ids: Sequence[str]) -> None:
    """Remove the stored pairs of `profile_ids`."""
    rows = [
        {"domain_name": domain_name, "level": lv, "digest": d, "profile_id": pid}
        for pid, pairs in held(tx, domain_name, profile_ids).items()
        for lv, d in pairs
    ]
    if not rows:
        return
    _DELETE_DIGESTS.execute(tx.conn, rows)
    c = rule_match_profile.c
    for start in range(0, len(profile_ids), 500):
        tx.conn.execute(
            delete(rule_match_profile).where(
                c.domain_name == domain_name,
                c.profile_id.in_(list(profile_ids[start : start + 500])),
            )
        )


def clear(tx: Tx, domain_name: str) -> None:
    """Remove every stored pair of the domain."""
    tx.conn.execute(delete(rule_match_digest).where(_digest.domain_name == domain_name))
    tx.conn.execute(
        delete(rule_match_profile).where(rule_match_profile.c.domain_name == domain_name)
    )


class BulkLoad:
    """The pairs of a whole domain, added chunk by chunk after `clear`, written by `finish`
    (in the caller's transaction)."""

    def __init__(self, tx: Tx, domain_name: str) -> None:
        self._tx = tx
        self._domain_name = domain_name
        self.stored = 0
        for table in (_load, _load_packed):
            table.drop(tx.conn, checkfirst=True)
            table.create(tx.conn)

    def add(
        self, rows: Sequence[tuple[int, bytes, str]], packed: Sequence[tuple[str, bytes]]
    ) -> None:
        """Add (level, digest, profile id) rows and the same pairs as (profile id, packed)."""
        conn = self._tx.conn
        _INSERT_LOAD.execute_tuples(conn, ("level", "digest", "profile_id"), rows)
        _INSERT_LOAD_PACKED.execute_tuples(conn, ("profile_id", "digests"), packed)
        self.stored += len(rows)

    def finish(self) -> int:
        """Write what was added; returns how many pairs."""
        conn = self._tx.conn
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            # Helper threads for the sorts (4.6 million digest rows for a million profiles);
            # the connection goes back to the pool without them.
            conn.exec_driver_sql("PRAGMA threads = 4")
        try:
            load, packed = _load.c, _load_packed.c
            domain = literal(self._domain_name, String(64))
            conn.execute(
                rule_match_digest.insert().from_select(
                    ["domain_name", "level", "digest", "profile_id"],
                    select(domain, load.level, load.digest, load.profile_id).order_by(
                        load.level, load.digest, load.profile_id
                    ),
                )
            )
            conn.execute(
                rule_match_profile.insert().from_select(
                    ["domain_name", "profile_id", "digests"],
                    select(domain, packed.profile_id, packed.digests).order_by(packed.profile_id),
                )
            )
        finally:
            if sqlite:
                conn.exec_driver_sql("PRAGMA threads = 0")
        _load.drop(conn)
        _load_packed.drop(conn)
        return self.stored
