"""The match features of a profile (spec §5.2): the normalised values a probabilistic matching
job compares, computed when the profile is written and kept sealed in `ml_feature`.

A job compares first and last name, email, phone (E.164 through libphonenumber), postal code,
city and birth date (a calendar date, however it was written: `normalize_date`). Normalising
them for a whole domain at job time cost more than half of the job's own work (libphonenumber
alone about 25 µs a number), so every write of a profile in a
domain with `Matching.Enabled` stores them, in the write's transaction, through the profiles
service's batch hook (`profiles.service.on_profiles_written`): CreateProfile, UpdateProfile,
merges and their undoing, and batched ingestion (one executemany per batch). Domains without
Matching store nothing and pay one look-up of the domain's cached configuration per write.

A row is sealed with the domain's cipher like every record (AES-GCM, the associated data binding
domain, table and profile id), and its payload names the profile version and the basis (the
format of the values and the phone region) it was computed for. The job uses a row only when
both are current; a missing or stale row — a profile written while Matching was off, a change of
the default phone region, a row written by an older format — is recomputed from the profile by
the job and stored again, so a job never compares out-of-date values. Rows go with their
profile: a foreign key deletes them with it (DeleteProfile, DeleteDomain), and a merge deletes
those of the profiles merged away (their undo writes them again).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import bindparam, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from openprofiles.context import Tx
from openprofiles.crypto.domain_keys import DomainCipher
from openprofiles.crypto.errors import DecryptionError
from openprofiles.domains.service import find_domain, register_domain_table
from openprofiles.gc_pause import paused_gc
from openprofiles.normalize import normalize_date, normalize_email, normalize_name, normalize_phone
from openprofiles.profiles import service as profiles
from openprofiles.profiles.models import ProfileRecord
from openprofiles.store.in_lists import in_chunks
from openprofiles.store.many import ManyWriter
from openprofiles.store.prepared import PreparedRead
from openprofiles.store.schema import ml_feature, profile

logger = logging.getLogger(__name__)

FEATURE_TABLE = "ml_feature"
# The format of the stored values: raise it when what `FeatureColumns.values` computes changes,
# and every stored row is recomputed at the next job.
FORMAT = 2  # 2: birth dates normalised (normalize_date)

_EMAIL_FIELDS = ("EmailAddress", "PersonalEmailAddress", "BusinessEmailAddress")
_PHONE_FIELDS = ("PhoneNumber", "MobilePhoneNumber", "HomePhoneNumber", "BusinessPhoneNumber")
_ADDRESS_FIELDS = ("Address", "ShippingAddress", "MailingAddress", "BillingAddress")
COLUMNS = ("first_name", "last_name", "email", "phone", "postal_code", "city", "birth_date")

register_domain_table(ml_feature)

Values = list[str | None]


class FeatureColumns:
    """The comparable values of many profiles, column by column (in memory only): "unique_id"
    and `COLUMNS`, None where a profile has no value.

    Built one profile at a time, without a dict per profile: a job holds a whole domain, and
    100,000 live dicts made Python's cycle collector walk them again and again while they were
    built. The columns go to DuckDB as one Arrow table."""

    def __init__(self, region: str) -> None:
        self.region = region
        self.columns: dict[str, list[str | None]] = {c: [] for c in ("unique_id", *COLUMNS)}
        # Raw value -> normal form, for this table: first names, surnames and a household's
        # phone recur, and libphonenumber's parse is the costliest step. A dict of its own,
        # not normalize_phone's bounded cache, which a whole domain would cycle through.
        self._names: dict[str, str] = {}
        self._phones: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self.columns["unique_id"])

    def add(self, profile_id: str, fields: dict[str, Any]) -> None:
        """Append a profile, its values computed from its fields."""
        self.append(profile_id, self.values(fields))

    def append(self, profile_id: str, values: Sequence[str | None]) -> None:
        """Append a profile whose values (in `COLUMNS` order) are already computed."""
        self.columns["unique_id"].append(profile_id)
        for name, value in zip(COLUMNS, values, strict=True):
            self.columns[name].append(value)

    def put(self, index: int, values: Sequence[str | None]) -> None:
        """Replace the values of the profile at `index`."""
        for name, value in zip(COLUMNS, values, strict=True):
            self.columns[name][index] = value

    def row(self, index: int) -> dict[str, str | None]:
        """One profile's values by column name (for tests)."""
        return {name: values[index] for name, values in self.columns.items()}

    def values(self, fields: dict[str, Any]) -> Values:
        """A profile's values in `COLUMNS` order."""
        city = postal = ""
        for name in _ADDRESS_FIELDS:
            address = fields.get(name)
            if isinstance(address, dict):
                city = city or " ".join(str(address.get("City") or "").split()).casefold()
                postal = postal or "".join(str(address.get("PostalCode") or "").split()).casefold()
        email = phone = ""
        for name in _EMAIL_FIELDS:
            raw = fields.get(name)
            if isinstance(raw, str) and (email := normalize_email(raw)):
                break
        for name in _PHONE_FIELDS:
            raw = fields.get(name)
            if isinstance(raw, str) and (phone := self._phone(raw)):
                break
        return [
            self._name(fields.get("FirstName")) or None,
            self._name(fields.get("LastName")) or None,
            email or None,
            phone or None,
            postal or None,
            city or None,
            normalize_date(str(fields.get("BirthDate") or ""), self.region) or None,
        ]

    def _name(self, raw: Any) -> str:
        text = str(raw or "")
        normal = self._names.get(text)
        if normal is None:
            normal = self._names[text] = normalize_name(text)
        return normal

    def _phone(self, raw: str) -> str:
        normal = self._phones.get(raw)
        if normal is None:
            normal = self._phones[raw] = normalize_phone(raw, self.region)
        return normal


def features(profiles_fields: dict[str, dict[str, Any]], region: str) -> FeatureColumns:
    """The comparable values of profiles given as {profile id: fields}."""
    table = FeatureColumns(region)
    for profile_id, fields in profiles_fields.items():
        table.add(profile_id, fields)
    return table


# ---------------------------------------------------------------------------- stored rows


def basis(region: str) -> str:
    """What a row's values depend on besides the profile: their format and the phone region."""
    return f"{FORMAT}:{region}"


def _seal(cipher: DomainCipher, profile_id: str, version: int, basis: str, values: Values) -> bytes:
    # [version, basis, *values]: an array, the cheapest payload to open by the hundred thousand.
    return cipher.seal_list(FEATURE_TABLE, profile_id, [version, basis, *values])


_UPSERT = {
    name: ManyWriter(
        statement.on_conflict_do_update(
            index_elements=[ml_feature.c.domain_name, ml_feature.c.profile_id],
            set_={"sealed": statement.excluded.sealed},
        )
    )
    for name, statement in (
        ("sqlite", sqlite_insert(ml_feature)),
        ("postgresql", pg_insert(ml_feature)),
    )
}


def _store(tx: Tx, domain_name: str, rows: Iterable[tuple[str, bytes]]) -> None:
    # One row per profile: PostgreSQL refuses an upsert that touches a row twice.
    latest = dict(rows)
    _UPSERT[tx.conn.dialect.name].execute(
        tx.conn,
        [{"domain_name": domain_name, "profile_id": p, "sealed": s} for p, s in latest.items()],
    )


def matching_enabled(tx: Tx, domain_name: str) -> bool:
    record = find_domain(tx, domain_name=domain_name)
    return bool(record and (record.config.get("Matching") or {}).get("Enabled"))


def on_profiles_written(tx: Tx, domain_name: str, records: Sequence[ProfileRecord]) -> None:
    """Store the written profiles' features when the domain has Matching enabled. Runs in the
    write's transaction (profiles.service batch hook)."""
    if not records or not matching_enabled(tx, domain_name):
        return
    cipher = tx.cipher(domain_name)
    region = tx.settings.default_phone_region
    current = basis(region)
    table = FeatureColumns(region)
    _store(
        tx,
        domain_name,
        (
            (r.profile_id, _seal(cipher, r.profile_id, r.version, current, table.values(r.fields)))
            for r in records
        ),
    )


# Registered when identity resolution is imported (as register_domain_table is): idempotent.
if on_profiles_written not in profiles.on_profiles_written:
    profiles.on_profiles_written.append(on_profiles_written)


def forget(tx: Tx, domain_name: str, profile_ids: Sequence[str]) -> None:
    """Delete the features of profiles that are no longer live (merged away, deleted)."""
    for chunk in in_chunks(profile_ids):
        tx.conn.execute(
            delete(ml_feature).where(
                ml_feature.c.domain_name == domain_name, ml_feature.c.profile_id.in_(chunk)
            )
        )


# Two scans joined in Python rather than one join: each reads its table in storage order (the
# features clustered by profile id), where a join looks every profile's row up in the other.
_STORED = PreparedRead(
    select(ml_feature.c.profile_id, ml_feature.c.sealed)
    .where(ml_feature.c.domain_name == bindparam("domain_name"))
    .order_by(ml_feature.c.profile_id)
)
_SEALED_PROFILES = select(profile.c.profile_id, profile.c.version, profile.c.sealed).where(
    profile.c.domain_name == bindparam("domain_name"),
    profile.c.profile_id.in_(bindparam("ids", expanding=True)),
    profile.c.merged_into.is_(None),
)
# Profiles opened per statement when rows are recomputed.
_CHUNK = 500


@paused_gc()  # 100,000 payloads, all kept (openprofiles.gc_pause)
def live_features(tx: Tx, domain_name: str) -> FeatureColumns:
    """The features of the domain's live profiles in profile id order, from their stored rows;
    rows missing or stale (another version, another basis) are recomputed from the profiles
    and stored again (`tx` must be a write transaction)."""
    cipher = tx.cipher(domain_name)
    region = tx.settings.default_phone_region
    current = basis(region)
    params = {"domain_name": domain_name}
    versions = profiles.live_versions(tx, domain_name=domain_name)
    stored = _STORED.tuples(tx.conn, params)
    # SQLite's driver gives bytes already; PostgreSQL's may give a memoryview.
    blobs: Sequence[Any] = (
        stored if tx.conn.dialect.name == "sqlite" else [(p, bytes(s)) for p, s in stored]
    )
    ids = [profile_id for profile_id, _ in stored]
    opened: list[Any]  # the payloads; None for a row that does not open
    try:
        opened = cipher.open_lists(FEATURE_TABLE, blobs)
    except DecryptionError:
        # A row that does not open (damaged, or of a format this version does not know) is
        # recomputed from its profile like a stale one: the profile itself opens, or the job
        # fails on it as it would have without stored features.
        opened = [_open_one(cipher, p, bytes(blob)) for p, blob in blobs]
        logger.warning(
            "%d match feature rows of domain %s did not open; recomputed from their profiles",
            sum(payload is None for payload in opened),
            domain_name,
        )
    # [version, basis, *values]: used when it is the live profile's version's, on this basis;
    # in profile id order, as the rows are read. Usually every row is: that is checked on whole
    # collections first (dict and set comparisons run in C), then row by row if not.
    rows: dict[str, list[Any]]
    if (
        len(ids) == len(versions)
        and all(opened)
        and {payload[1] for payload in opened} == {current}
        and dict(zip(ids, [payload[0] for payload in opened], strict=True)) == versions
    ):
        rows = dict(zip(ids, opened, strict=True))
    else:
        rows = {
            profile_id: payload
            for profile_id, payload in zip(ids, opened, strict=True)
            if payload is not None
            and payload[0] == versions.get(profile_id)
            and payload[1] == current
        }
    table = FeatureColumns(region)
    if len(rows) < len(versions):
        stale = [p for p in versions if p not in rows]
        rows.update(_recompute(tx, cipher, domain_name, table, stale, current))
        rows = dict(sorted(rows.items()))
    # A profile deleted or merged since it was listed (PostgreSQL) has no row: it is left out.
    columns = list(zip(*rows.values(), strict=True)) or [()] * (2 + len(COLUMNS))
    table.columns["unique_id"] = list(rows)
    for name, column in zip(COLUMNS, columns[2:], strict=True):
        table.columns[name] = list(column)
    return table


def _open_one(cipher: DomainCipher, profile_id: str, blob: bytes) -> list[Any] | None:
    try:
        return cipher.open_lists(FEATURE_TABLE, [(profile_id, blob)])[0]
    except DecryptionError:
        return None


def _recompute(
    tx: Tx,
    cipher: DomainCipher,
    domain_name: str,
    table: FeatureColumns,
    stale: list[str],
    current: str,
) -> dict[str, list[Any]]:
    """Compute the features of `stale` profiles from the profiles and store them."""
    rows: dict[str, list[Any]] = {}
    sealed_rows: list[tuple[str, bytes]] = []
    for start in range(0, len(stale), _CHUNK):
        for profile_id, version, sealed in tx.conn.execute(
            _SEALED_PROFILES, {"domain_name": domain_name, "ids": stale[start : start + _CHUNK]}
        ):
            opened = cipher.open_record(profiles.PROFILE_TABLE, profile_id, bytes(sealed))
            values = table.values(opened["fields"])
            rows[profile_id] = [version, current, *values]
            sealed_rows.append((profile_id, _seal(cipher, profile_id, version, current, values)))
    _store(tx, domain_name, sealed_rows)
    return rows
