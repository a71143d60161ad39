"""The caller's endpoint of a contact-start event turned down because several profiles share it,
kept for the agent's screen pop during the contact's live period (`contact_shared_endpoint`).

CTR-NoInferred and CTR-AutoAssociateOnly link a contact to no profile when the caller's phone
number (voice) or email address (chat, email) is on several (spec §3.2: the request is
rejected). Nothing of such an event was stored (a start event is answered, not dead-lettered),
and the screen pop said the contact was unknown, exactly when the agent most needs to choose.
The endpoint is kept instead (`keep_shared_endpoint`), sealed under the domain's data key like
every personal value, with its blind-index digest (as profile_key holds it) and none of it in
clear; the screen pop (ui.agent_pages `contact_pop`) searches by it (`shared_endpoint`) and
lists the profiles that share it. Nothing is linked: the agent links the contact from the chosen
profile's page, as for any contact.

It lives as long as a record waits for its contact (contacts.links `WAIT_SECONDS`, the live
period of a contact's state here): read no longer after that, and purged by the kept-records
sweep (contacts.sweep `purge_shared_endpoints`: `purge_stale`). It goes before then with
* an agent's link of the contact (AddProfileKey `_ctrContactId`: `_forget_linked`): the
  contact has its profile, and the endpoint no use;
* DeleteProfile of a profile that holds the endpoint (`_forget_with_profiles`): the customer
  erased, their number must not outlive them here;
* DeleteDomain (the domain's tables: contacts.service registers this one);
* a customer's erasure by value (`openprofiles instances purge-unrouted --matching`:
  `held_endpoints`, `purge_holding`), for a number or address that no profile holds any more,
  which DeleteProfile could not find it by.
A contact whose record is applied to a profile later is shown with that profile, as linked
contacts are: the screen pop looks at the endpoint only for a contact linked to none.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from openprofiles.contacts.links import CONTACT_KEY, WAIT_SECONDS
from openprofiles.contacts.models import ContactRecord
from openprofiles.contacts.routing import contact_digest
from openprofiles.context import Tx
from openprofiles.errors import ServiceError
from openprofiles.normalize import normalize
from openprofiles.profiles.service import (
    SearchCriterion,
    key_content_type,
    on_keys_added,
    on_profiles_deleted,
    search_profiles,
)
from openprofiles.store.in_lists import in_chunks
from openprofiles.store.schema import contact_shared_endpoint, profile_key

if TYPE_CHECKING:
    from openprofiles.held_values import HeldValue

SHARED_TABLE = "contact_shared_endpoint"
# The key the contact-record templates find a caller by, per endpoint type (their `phone` and
# `email` fields' keys).
ENDPOINT_KEYS = {"TELEPHONE_NUMBER": "_phone", "EMAIL_ADDRESS": "_email"}
# How long the endpoint is kept: a contact's live period, as long as a record waits for the
# contact it continues.
KEPT_FOR = timedelta(seconds=WAIT_SECONDS)


def keep_shared_endpoint(tx: Tx, domain_name: str, record: ContactRecord) -> bool:
    """Keep the endpoint of a start event the pipeline turned down as ambiguous, when several
    profiles do share it (the ambiguity may be another key's: a `_ctrContactId` an agent linked
    to several profiles); whether it was kept. A later event of the contact keeps its own."""
    endpoint = record.customer_endpoint
    key_name = ENDPOINT_KEYS.get(endpoint.type) if endpoint is not None else None
    if endpoint is None or key_name is None:
        return False
    try:
        found, _ = search_profiles(
            tx,
            domain_name=domain_name,
            criteria=[SearchCriterion(key_name, (endpoint.address,))],
            limit=2,
        )
        content_type = key_content_type(tx, domain_name=domain_name, key_name=key_name)
    except ServiceError:
        # A value SearchProfiles refuses finds no one: nothing to show.
        return False
    normal = normalize(
        content_type, endpoint.address, phone_region=tx.settings.default_phone_region
    )
    if len(found) < 2 or not normal:
        return False
    cipher = tx.cipher(domain_name)
    digest = contact_digest(tx, domain_name, record.contact_id)
    row = {
        "domain_name": domain_name,
        "contact_digest": digest,
        "key_name": key_name,
        "endpoint_digest": cipher.digest(key_name, normal),
        "sealed": cipher.seal_record(SHARED_TABLE, digest.hex(), {"address": endpoint.address}),
        "kept_at": tx.now,
    }
    statement: Any = (
        sqlite_insert(contact_shared_endpoint)
        if tx.services.database.is_sqlite
        else pg_insert(contact_shared_endpoint)
    )
    tx.conn.execute(
        statement.values(row).on_conflict_do_update(
            index_elements=["domain_name", "contact_digest"],
            set_={name: row[name] for name in ("key_name", "endpoint_digest", "sealed", "kept_at")},
        )
    )
    return True


def shared_endpoint(tx: Tx, *, domain_name: str, contact_id: str) -> tuple[str, str] | None:
    """(key name, endpoint) kept for the contact (see the module), or None: none kept, or kept
    longer ago than the live period (the sweep has not purged it yet)."""
    digest = contact_digest(tx, domain_name, contact_id)
    shared = contact_shared_endpoint.c
    row = tx.conn.execute(
        select(shared.key_name, shared.sealed).where(
            shared.domain_name == domain_name,
            shared.contact_digest == digest,
            shared.kept_at > tx.now - KEPT_FOR,
        )
    ).first()
    if row is None:
        return None
    payload = tx.cipher(domain_name).open_record(SHARED_TABLE, digest.hex(), bytes(row.sealed))
    return row.key_name, payload["address"]


def any_stale(tx: Tx, *, now: datetime | None = None) -> bool:
    """Whether some endpoint is kept past the live period (before `now`, when given): the
    sweep asks first, so that a minute with none takes no write lock."""
    cut = (now or tx.now) - KEPT_FOR
    shared = contact_shared_endpoint.c
    found = tx.conn.execute(select(shared.domain_name).where(shared.kept_at <= cut).limit(1))
    return found.first() is not None


def purge_stale(tx: Tx, *, now: datetime | None = None) -> int:
    """Delete the endpoints kept longer than the live period (before `now`, when given); how
    many went."""
    cut = (now or tx.now) - KEPT_FOR
    gone = tx.conn.execute(
        delete(contact_shared_endpoint).where(contact_shared_endpoint.c.kept_at <= cut)
    )
    return int(gone.rowcount or 0)


def held_endpoints(tx: Tx, *, value: HeldValue) -> tuple[list[tuple[str, str, bytes]], list[str]]:
    """What `purge_holding` deletes for a customer's email address or phone number `value`
    (compared as held_values compares them: the same normaliser as the keys): (domain, key name,
    blind-index digest) for every domain that keeps an endpoint, and the domains whose key
    cannot be used now (not looked at: theirs go with the live period). Read apart from the
    delete: a domain's key may be unwrapped here (KMS), which no write transaction waits on."""
    key_name = {"email": "_email", "phone": "_phone"}.get(value.kind)
    if key_name is None:
        return [], []
    shared = contact_shared_endpoint.c
    domains = tx.conn.execute(select(shared.domain_name).distinct()).scalars().all()
    found, unreadable = [], []
    for domain_name in sorted(domains):
        try:
            digest = tx.cipher(domain_name).digest(key_name, value.normal)
            found.append((domain_name, key_name, digest))
        except ServiceError:
            unreadable.append(domain_name)
    return found, unreadable


def purge_holding(tx: Tx, endpoints: list[tuple[str, str, bytes]], *, dry_run: bool = False) -> int:
    """Delete the kept endpoints `held_endpoints` named (or count them, with `dry_run`); how
    many. Found by their blind-index digest, none opened."""
    shared = contact_shared_endpoint.c
    count = 0
    for domain_name, key_name, digest in endpoints:
        holding = (
            shared.domain_name == domain_name,
            shared.key_name == key_name,
            shared.endpoint_digest == digest,
        )
        if dry_run:
            count += len(tx.conn.execute(select(shared.contact_digest).where(*holding)).all())
        else:
            count += int(tx.conn.execute(delete(contact_shared_endpoint).where(*holding)).rowcount)
    if count and not dry_run:
        tx.erased()
    return count


def _forget_linked(
    tx: Tx, domain_name: str, profile_id: str, key_name: str, digests: list[bytes]
) -> None:
    """An agent's link of the contact (AddProfileKey `_ctrContactId`) supersedes its endpoint."""
    if key_name != CONTACT_KEY:
        return
    for chunk in in_chunks(sorted(set(digests))):
        tx.conn.execute(
            delete(contact_shared_endpoint).where(
                contact_shared_endpoint.c.domain_name == domain_name,
                contact_shared_endpoint.c.contact_digest.in_(chunk),
            )
        )


def _forget_with_profiles(tx: Tx, domain_name: str, profile_ids: list[str]) -> None:
    """DeleteProfile (profiles.service.on_profiles_deleted, before their keys go): the endpoints
    the deleted profiles hold, found by their blind-index digests, go with them."""
    shared = contact_shared_endpoint.c
    for chunk in in_chunks(profile_ids):
        held = (
            select(profile_key.c.digest)
            .where(
                profile_key.c.domain_name == domain_name,
                profile_key.c.profile_id.in_(chunk),
                profile_key.c.key_name == shared.key_name,
                profile_key.c.digest == shared.endpoint_digest,
            )
            .exists()
        )
        tx.conn.execute(
            delete(contact_shared_endpoint).where(shared.domain_name == domain_name, held)
        )


if _forget_linked not in on_keys_added:
    on_keys_added.append(_forget_linked)
if _forget_with_profiles not in on_profiles_deleted:
    on_profiles_deleted.append(_forget_with_profiles)
