"""A profile's contact history and other objects for the profile page: tabs per object type
with counts, the current type's objects newest first, 50 to a page, and one object's full
record (a contact's with its channel, times, agent, queue and disconnect reason labelled above
the JSON: an agent reads those, not the record's dozens of members).

An object is known by the digest of its unique key (`ObjectRow.unique_key`, hex), which the
pages never put in an address as it is: agent_pages seals it into the links (the digest is a
stable stand-in for the customer's key value), and the cursor of the next page with it.

Contact records are the objects of the domain's contact-record types (CTR, and those of its
instance integrations; spec §3.2: contact history is ListProfileObjects of CTR). Their tab is
the contact-history query of contacts.history, newest contact first (by when the contact
started, not when its record was stored); each row shows channel, start, duration, agent, queue,
disconnect reason and contact id (an agent names the contact to a supervisor by it). Other objects
are listed newest write first.

Times (a contact's start, when a record was written) are ShownTime values: the page writes them
in UTC inside `<time datetime="...">`, which static/local-time.js rewrites to the browser's own
time zone; without script, the UTC text stays, and says it is UTC.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from openprofiles.contacts.history import (
    contact_history,
    contact_object_types,
    cursor_from_state,
    cursor_state,
    summarise,
)
from openprofiles.contacts.models import ContactSummary
from openprofiles.context import Tx
from openprofiles.objects import service as objects

CONTACT_TYPE = "CTR"
PAGE_SIZE = 50
SUMMARY_FIELDS = 4
T = TypeVar("T")


@dataclass(frozen=True)
class ShownTime:
    """A moment as a page shows it: `iso` for a `<time datetime>` (UTC, to the second), `text`
    the UTC reading shown until the browser's script (or without one) puts it in local time."""

    iso: str
    text: str

    def __str__(self) -> str:
        return self.text


def shown_time(value: datetime | None, *, seconds: bool = False) -> ShownTime | None:
    """`value` for a `<time>` element; None when unknown. A time without a zone is UTC, as the
    store keeps every time. `seconds`: shown to the second (a contact's start), else to the
    minute (as the pages' `time` filter shows times)."""
    if value is None:
        return None
    utc = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    text = utc.strftime("%Y-%m-%d %H:%M:%S UTC" if seconds else "%Y-%m-%d %H:%M UTC")
    return ShownTime(utc.isoformat(timespec="seconds").replace("+00:00", "Z"), text)


@dataclass
class ObjectRow:
    unique_key: str
    updated_at: datetime | None
    # For contacts: channel, start, duration, agent, queue, disconnect reason, contact id.
    columns: list[str | ShownTime] = field(default_factory=list)

    @property
    def updated(self) -> ShownTime | None:
        return shown_time(self.updated_at)


@dataclass
class ObjectsView:
    counts: dict[str, int]
    object_type: str | None
    is_contacts: bool
    headings: list[str]
    rows: list[ObjectRow]
    # Where the next page starts, as its (sealed) link carries it; None on the last page.
    next_after: dict[str, Any] | None


CONTACT_HEADINGS = [
    "Channel",
    "Start",
    "Duration",
    "Agent",
    "Queue",
    "Disconnect reason",
    "Contact ID",
]


def load(
    tx: Tx,
    *,
    domain_name: str,
    profile_id: str,
    object_type: str | None,
    after: Mapping[str, Any] | None,
) -> ObjectsView:
    """The tab of `object_type` (the contacts, or else the first type, when it is None or the
    profile has none of it), from `after` (a `next_after`; one that is not valid for the type's
    ordering starts at the first page)."""
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
    if object_type in contact_object_types(tx, domain_name=domain_name):
        history = contact_history(
            tx,
            domain_name=domain_name,
            profile_id=profile_id,
            object_type_name=object_type,
            limit=PAGE_SIZE,
            after=_cursor(cursor_from_state, after),
        )
        contact_rows = [
            ObjectRow(c.unique_key or "", c.updated_at, contact_columns(c))
            for c in history.contacts
        ]
        next_contact = cursor_state(history.next_after) if history.next_after else None
        return ObjectsView(
            counts, object_type, True, list(CONTACT_HEADINGS), contact_rows, next_contact
        )
    items, more = objects.list_profile_objects(
        tx,
        domain_name=domain_name,
        object_type_name=object_type,
        profile_id=profile_id,
        limit=PAGE_SIZE,
        after=_cursor(_written_after, after),
    )
    rows = []
    headings: list[str] = []
    for item in items:
        data = _parse(item.object_json)
        if not headings:
            headings = [k for k, v in data.items() if not isinstance(v, dict | list)][
                :SUMMARY_FIELDS
            ]
        rows.append(
            ObjectRow(item.unique_key, item.updated_at, [_text(data.get(h)) for h in headings])
        )
    next_after = (
        {
            "t": items[-1].updated_at.isoformat(),
            "w": items[-1].write_order,
            "k": items[-1].unique_key,
        }
        if more
        else None
    )
    return ObjectsView(counts, object_type, False, headings, rows, next_after)


def _written_after(state: Mapping[str, Any]) -> objects.WrittenAfter:
    try:
        return datetime.fromisoformat(state["t"]), int(state["w"]), bytes.fromhex(state["k"])
    except (KeyError, TypeError) as exc:
        raise ValueError("not a cursor of objects listed by write") from exc


def _cursor(parse: Callable[[Mapping[str, Any]], T], state: Mapping[str, Any] | None) -> T | None:
    """`state` read by `parse`; None (the first page) when there is none or it is not valid."""
    if state is None:
        return None
    try:
        return parse(state)
    except ValueError:
        return None


# A contact's record page: what the agent reads first, labelled, in this order. The whole
# record (a CTR has dozens of members, nested) follows as JSON for whoever needs the rest.
CONTACT_DETAIL_LABELS = (
    "Contact ID",
    "Channel",
    "Start",
    "End",
    "Duration",
    "Agent",
    "Queue",
    "Disconnect reason",
)
# A labelled value the record does not have (no DisconnectTimestamp yet, no agent: a contact
# abandoned in the queue): said, rather than an empty line that reads as a page fault.
NOT_RECORDED = "Not recorded"


@dataclass(frozen=True)
class ObjectDetail:
    """One record as its page shows it: `text`, the record as indented JSON; `contact`, for a
    contact record, its CONTACT_DETAIL_LABELS with their values (a time as ShownTime), else
    None (another object type's record is shown as its JSON alone)."""

    text: str
    contact: list[tuple[str, str | ShownTime]] | None = None


def load_one(
    tx: Tx, *, domain_name: str, profile_id: str, object_type: str, digest: bytes
) -> ObjectDetail | None:
    """The object's full record, or None (unknown, or another profile's); a record of one of
    the domain's contact-record types with its contact's details labelled."""
    tx.cipher(domain_name)
    found = objects.find_object(
        tx, domain_name=domain_name, object_type_name=object_type, unique_digest=digest
    )
    if found is None or found.profile_id != profile_id:
        return None
    data = _parse(found.object_json)
    text = json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True)
    if object_type not in contact_object_types(tx, domain_name=domain_name):
        return ObjectDetail(text)
    return ObjectDetail(text, contact_details(summarise(data)))


def contact_details(contact: ContactSummary) -> list[tuple[str, str | ShownTime]]:
    """(label, value) of a contact's record page, CONTACT_DETAIL_LABELS' order; NOT_RECORDED
    for what the record does not have."""
    values: list[str | ShownTime] = [
        contact.contact_id,
        _text(contact.channel),
        shown_time(contact.start, seconds=True) or "",
        shown_time(contact.end, seconds=True) or "",
        shown_duration(contact.duration_seconds),
        _text(contact.agent),
        _text(contact.queue),
        _text(contact.disconnect_reason),
    ]
    return [
        (label, value or NOT_RECORDED)
        for label, value in zip(CONTACT_DETAIL_LABELS, values, strict=True)
    ]


def shown_duration(seconds: int | None) -> str:
    """A contact's length as a clock shows it: "4:05", "2:30:05" from an hour on (a 2.5-hour
    call read "150:05"); empty when unknown, "—" when its end is before its start (a record
    with inconsistent timestamps, said rather than hidden)."""
    if seconds is None:
        return ""
    if seconds < 0:
        return "—"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def contact_columns(contact: ContactSummary) -> list[str | ShownTime]:
    return [
        _text(contact.channel),
        shown_time(contact.start, seconds=True) or "",
        shown_duration(contact.duration_seconds),
        _text(contact.agent),
        _text(contact.queue),
        _text(contact.disconnect_reason),
        contact.contact_id,
    ]


def _parse(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError:
        return {"value": text}
    return data if isinstance(data, dict) else {"value": data}


def _text(value: Any) -> str:
    return "" if value is None else str(value)
