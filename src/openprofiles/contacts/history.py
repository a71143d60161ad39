"""Contact history of a profile: the profile's contact records (objects of the domain's
contact-record object types), newest contact first — for the agent pages (`contact_history`)
and for ListProfileObjects of a contact-record type (`list_contact_objects`).

"Newest" is the contact's InitiationTimestamp, not when its record was written: records arrive
late (a file of last month's contacts, a Kinesis stream catching up) and a contact's record is
replaced when it is updated, and neither makes an old contact new.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select

from openprofiles.contacts.models import ContactRecordInvalid, ContactSummary
from openprofiles.contacts.records import parse_timestamp
from openprofiles.context import Tx
from openprofiles.integrations.models import DEFAULT_INSTANCE_OBJECT_TYPE
from openprofiles.objects.models import ProfileObject
from openprofiles.objects.service import list_profile_objects
from openprofiles.store.schema import integration

# A profile holds at most 1,000 objects (spec §0): one read of this many covers its contacts.
MAX_OBJECTS = 1000


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


# Where a listing of contact objects resumes: (0, -start seconds, unique key) for a record with
# a start time, (1, 0.0, unique key) for one without (listed after every dated one).
ContactCursor = tuple[int, float, str]


def list_contact_objects(
    tx: Tx,
    *,
    domain_name: str,
    object_type_name: str,
    profile_id: str,
    key_filter: tuple[str, Sequence[bytes]] | None = None,
    limit: int,
    after: ContactCursor | None = None,
) -> tuple[list[ProfileObject], bool]:
    """A profile's objects of a contact-record type, newest contact first (ties and records
    without a start time by unique key), from `after` on; the flag says whether more follow.

    Every object of the type is read to order them (a profile holds at most 1,000 objects,
    spec §0); NotFound when the profile does not exist.
    """
    records = _every_object(tx, domain_name, object_type_name, profile_id, key_filter)
    ordered = sorted(((contact_cursor(r), r) for r in records), key=lambda entry: entry[0])
    if after is not None:
        ordered = [entry for entry in ordered if entry[0] > after]
    return [r for _, r in ordered[:limit]], len(ordered) > limit


def _every_object(
    tx: Tx,
    domain_name: str,
    object_type_name: str,
    profile_id: str,
    key_filter: tuple[str, Sequence[bytes]] | None = None,
) -> list[ProfileObject]:
    """Every live object of the type on the profile: ordering contacts by start time needs them
    all, in pages of MAX_OBJECTS (one page unless the profile holds more than its quota)."""
    records: list[ProfileObject] = []
    after = None
    while True:
        batch, more = list_profile_objects(
            tx,
            domain_name=domain_name,
            object_type_name=object_type_name,
            profile_id=profile_id,
            key_filter=key_filter,
            limit=MAX_OBJECTS,
            after=after,
        )
        records.extend(batch)
        if not more or not batch:
            return records
        after = (batch[-1].updated_at, bytes.fromhex(batch[-1].unique_key))


def contact_cursor(record: ProfileObject) -> ContactCursor:
    """Where `record` sorts among contact objects, newest contact first."""
    try:
        parsed = json.loads(record.object_json)
    except ValueError:
        parsed = None
    start = _time(parsed.get("InitiationTimestamp")) if isinstance(parsed, Mapping) else None
    if start is None:
        return (1, 0.0, record.unique_key)
    return (0, -start.timestamp(), record.unique_key)


def contact_history(
    tx: Tx, *, domain_name: str, profile_id: str, limit: int = 20, offset: int = 0
) -> list[ContactSummary]:
    """The profile's contacts, newest first (by InitiationTimestamp, then LastUpdateTimestamp).

    NotFound when the profile does not exist.
    """
    summaries: dict[str, ContactSummary] = {}
    for type_name in contact_object_types(tx, domain_name=domain_name):
        for record in _every_object(tx, domain_name, type_name, profile_id):
            try:
                parsed = json.loads(record.object_json)
            except ValueError:
                continue
            if isinstance(parsed, Mapping) and parsed.get("ContactId"):
                summary = summarise(parsed)
                summaries.setdefault(summary.contact_id, summary)
    ordered = sorted(summaries.values(), key=_newest_first)
    return ordered[offset : offset + limit]


def _newest_first(summary: ContactSummary) -> tuple[float, str]:
    start = summary.start.timestamp() if summary.start else float("-inf")
    return (-start, summary.contact_id)


def summarise(record: Mapping[str, Any]) -> ContactSummary:
    """The summary of one contact record (missing or unreadable parts are None)."""
    start = _time(record.get("InitiationTimestamp"))
    end = _time(record.get("DisconnectTimestamp"))
    agent = record.get("Agent")
    queue = record.get("Queue")
    return ContactSummary(
        contact_id=str(record.get("ContactId")),
        channel=record.get("Channel"),
        start=start,
        end=end,
        duration_seconds=int((end - start).total_seconds()) if start and end else None,
        agent=agent.get("Username") if isinstance(agent, Mapping) else None,
        queue=queue.get("Name") if isinstance(queue, Mapping) else None,
        disconnect_reason=record.get("DisconnectReason"),
        raw=record,
    )


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_timestamp(value, "timestamp")
    except ContactRecordInvalid:
        return None
