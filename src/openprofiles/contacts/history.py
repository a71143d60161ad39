"""Contact history of a profile: its contact records (objects of the domain's contact-record
object types), newest contact first — for the agent pages (`contact_history`, a page of
summaries) and for ListProfileObjects of a contact-record type (objects.handlers, through
`objects.service.list_profile_contacts`).

"Newest" is the contact's start, its InitiationTimestamp, not when its record was written:
records arrive late (a file of last month's contacts, a Kinesis stream catching up), a batch
writes all its records at one time, and a contact's record is replaced when it is updated;
none of these makes an old contact new. Ties (two contacts started in the same microsecond)
go by the record's UNIQUE key digest, so the order is the same on every page. A record without
a start (no InitiationTimestamp, or one that cannot be read: only PutProfileObject can store
one) is listed after every contact with a start, as the oldest, in the same fixed order: when
it happened is unknown, and the newest contacts are the ones an agent opens the history for.

The start is kept in clear on the object's row (`profile_object.contact_start`, set at
ingestion), so a page is read from an index and only its records are opened.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from openprofiles.contacts.models import ContactSummary
from openprofiles.contacts.records import contact_start, timestamp_or_none
from openprofiles.context import Tx
from openprofiles.integrations.models import DEFAULT_INSTANCE_OBJECT_TYPE
from openprofiles.objects.models import ProfileObject
from openprofiles.objects.service import ContactAfter, list_profile_contacts
from openprofiles.store.schema import integration


def contact_object_types(tx: Tx, *, domain_name: str) -> list[str]:
    """The object types contact records are ingested as in the domain: those of its instance
    integrations, and CTR (the default)."""
    names = {
        r.object_type_name
        for r in tx.conn.execute(
            select(integration.c.object_type_name).where(
                integration.c.domain_name == domain_name, integration.c.instance_arn.is_not(None)
            )
        )
        if r.object_type_name
    }
    names.add(DEFAULT_INSTANCE_OBJECT_TYPE)
    return sorted(names)


def contact_after(record: ProfileObject) -> ContactAfter:
    """Where a listing of contact records resumes after `record`."""
    return (record.contact_start, bytes.fromhex(record.unique_key))


def cursor_state(after: ContactAfter) -> dict[str, str | None]:
    """`after` as a page token carries it (JSON)."""
    start, digest = after
    return {"s": start.isoformat() if start else None, "k": digest.hex()}


def cursor_from_state(state: Any) -> ContactAfter:
    """The cursor `cursor_state` gave `state`; ValueError for anything else (a token of the
    other ordering: the type became, or stopped being, a contact-record type)."""
    try:
        start, key = state["s"], state["k"]
        return (None if start is None else datetime.fromisoformat(start), bytes.fromhex(key))
    except (KeyError, TypeError) as exc:
        raise ValueError("not a contact-history cursor") from exc


@dataclass(frozen=True)
class ContactHistory:
    """A page of a profile's contact history, newest contact first."""

    contacts: list[ContactSummary]
    # Where the next page starts; None on the last page.
    next_after: ContactAfter | None


def contact_history(
    tx: Tx,
    *,
    domain_name: str,
    profile_id: str,
    object_type_name: str = DEFAULT_INSTANCE_OBJECT_TYPE,
    limit: int = 20,
    after: ContactAfter | None = None,
) -> ContactHistory:
    """A page of the profile's contacts recorded as `object_type_name`, newest first, from
    `after` on (the previous page's `next_after`). NotFound when the profile does not exist."""
    records, more = list_profile_contacts(
        tx,
        domain_name=domain_name,
        object_type_name=object_type_name,
        profile_id=profile_id,
        limit=limit,
        after=after,
    )
    contacts = []
    for record in records:
        try:
            parsed = json.loads(record.object_json)
        except ValueError:
            parsed = None
        contacts.append(summarise(parsed if isinstance(parsed, Mapping) else {}, record))
    return ContactHistory(contacts, contact_after(records[-1]) if more and records else None)


def summarise(record: Mapping[str, Any], stored: ProfileObject | None = None) -> ContactSummary:
    """The summary of one contact record (missing or unreadable parts are None); `stored` is the
    object it was read from, if any."""
    start = contact_start(record)
    end = timestamp_or_none(record.get("DisconnectTimestamp"))
    agent = record.get("Agent")
    queue = record.get("Queue")
    contact_id = record.get("ContactId")
    return ContactSummary(
        contact_id=str(contact_id) if contact_id is not None else "",
        channel=record.get("Channel"),
        start=start,
        end=end,
        duration_seconds=int((end - start).total_seconds()) if start and end else None,
        agent=agent.get("Username") if isinstance(agent, Mapping) else None,
        queue=queue.get("Name") if isinstance(queue, Mapping) else None,
        disconnect_reason=record.get("DisconnectReason"),
        raw=record,
        unique_key=stored.unique_key if stored else None,
        updated_at=stored.updated_at if stored else None,
    )
