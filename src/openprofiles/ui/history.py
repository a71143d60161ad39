"""A profile's contact history and other objects for the profile page: tabs per object type
with counts, the current type's objects newest first, 50 to a page, and one object's full
record.

An object is known by the digest of its unique key (`ObjectRow.unique_key`, hex), which the
pages never put in an address as it is: agent_pages seals it into the links (the digest is a
stable stand-in for the customer's key value).

Contact records are the `CTR` object type (spec §3.2: contact history is ListProfileObjects of
CTR); each row shows channel, start, duration, agent, queue and disconnect reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from openprofiles.context import Tx
from openprofiles.objects import service as objects

CONTACT_TYPE = "CTR"
PAGE_SIZE = 50
SUMMARY_FIELDS = 4


@dataclass
class ObjectRow:
    unique_key: str
    updated_at: datetime
    # For contacts: channel, start, duration, agent, queue, disconnect reason.
    columns: list[str] = field(default_factory=list)


@dataclass
class ObjectsView:
    counts: dict[str, int]
    object_type: str | None
    is_contacts: bool
    headings: list[str]
    rows: list[ObjectRow]
    # Where the next page starts: (updated_at, unique key digest in hex) of this page's last.
    next_after: tuple[datetime, str] | None


CONTACT_HEADINGS = ["Channel", "Start", "Duration", "Agent", "Queue", "Disconnect reason"]


def load(
    tx: Tx,
    *,
    domain_name: str,
    profile_id: str,
    object_type: str | None,
    after: tuple[datetime, bytes] | None,
) -> ObjectsView:
    counts: dict[str, int] = dict(
        sorted(
            objects.count_objects_by_type(
                tx, domain_name=domain_name, profile_id=profile_id
            ).items()
        )
    )
    if object_type is None or object_type not in counts:
        object_type = CONTACT_TYPE if CONTACT_TYPE in counts else next(iter(counts), None)
    if object_type is None:
        return ObjectsView(counts, None, False, [], [], None)
    items, more = objects.list_profile_objects(
        tx,
        domain_name=domain_name,
        object_type_name=object_type,
        profile_id=profile_id,
        limit=PAGE_SIZE,
        after=after,
    )
    is_contacts = object_type == CONTACT_TYPE
    rows = []
    headings: list[str] = list(CONTACT_HEADINGS) if is_contacts else []
    for item in items:
        data = _parse(item.object_json)
        if is_contacts:
            columns = contact_columns(data)
        else:
            if not headings:
                headings = [k for k, v in data.items() if not isinstance(v, dict | list)][
                    :SUMMARY_FIELDS
                ]
            columns = [_text(data.get(h)) for h in headings]
        rows.append(ObjectRow(item.unique_key, item.updated_at, columns))
    next_after = (items[-1].updated_at, items[-1].unique_key) if more else None
    return ObjectsView(counts, object_type, is_contacts, headings, rows, next_after)


def load_one(
    tx: Tx, *, domain_name: str, profile_id: str, object_type: str, digest: bytes
) -> str | None:
    """The object's full record as indented JSON, or None (unknown, or another profile's)."""
    tx.cipher(domain_name)
    found = objects.find_object(
        tx, domain_name=domain_name, object_type_name=object_type, unique_digest=digest
    )
    if found is None or found.profile_id != profile_id:
        return None
    data = _parse(found.object_json)
    return json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True)


def contact_columns(record: dict[str, Any]) -> list[str]:
    agent = record.get("Agent") or {}
    queue = record.get("Queue") or {}
    start = record.get("InitiationTimestamp") or record.get("ConnectedToSystemTimestamp")
    return [
        _text(record.get("Channel")),
        _text(start).replace("T", " ").replace("Z", " UTC"),
        _duration(start, record.get("DisconnectTimestamp")),
        _text(agent.get("Username") if isinstance(agent, dict) else ""),
        _text(queue.get("Name") if isinstance(queue, dict) else ""),
        _text(record.get("DisconnectReason")),
    ]


def _duration(start: Any, end: Any) -> str:
    try:
        seconds = int(
            (
                datetime.fromisoformat(str(end).replace("Z", "+00:00"))
                - datetime.fromisoformat(str(start).replace("Z", "+00:00"))
            ).total_seconds()
        )
    except (TypeError, ValueError):
        return ""
    if seconds < 0:
        return ""
    return f"{seconds // 60}:{seconds % 60:02d}"


def _parse(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError:
        return {"value": text}
    return data if isinstance(data, dict) else {"value": data}


def _text(value: Any) -> str:
    return "" if value is None else str(value)
