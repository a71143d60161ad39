"""Reading contact records (spec §3.1): splitting a body or file into records and checking each
one is a usable Amazon Connect contact record.

A body is one record (a JSON object), a JSON array of records, or JSON lines. Each record must
carry `ContactId` and `InstanceARN` (an instance ARN); `CustomerEndpoint`, when present, must be
an `{Address, Type}` object whose address can be read as what its type says (a phone number
for TELEPHONE_NUMBER, an email address for EMAIL_ADDRESS); timestamps must be ISO 8601.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from openprofiles.contacts.models import (
    CHANNELS,
    ENDPOINT_TYPES,
    ContactRecord,
    ContactRecordInvalid,
    Endpoint,
)
from openprofiles.integrations.models import is_instance_arn
from openprofiles.normalize import normalize_phone

MAX_RECORD_CHARS = 256_000

Item = tuple[str, Any]


def split_body(text: str) -> list[Item]:
    """(raw text, parsed JSON or a ContactRecordInvalid) for every record of a body."""
    stripped = text.strip()
    if not stripped:
        return []
    try:
        whole = json.loads(stripped)
    except ValueError:
        return list(_json_lines(stripped))
    if isinstance(whole, list):
        return [
            (item if isinstance(item, str) else json.dumps(item, ensure_ascii=False), item)
            for item in whole
        ]
    return [(stripped, whole)]


def _json_lines(text: str) -> Iterator[Item]:
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            yield line, json.loads(line)
        except ValueError as exc:
            yield line, ContactRecordInvalid(f"The record is not valid JSON: {exc}.")


def parse_contact_record(parsed: Any, raw: str) -> ContactRecord:
    """The contact record, or ContactRecordInvalid saying what is wrong with it."""
    if isinstance(parsed, ContactRecordInvalid):
        raise parsed
    if len(raw) > MAX_RECORD_CHARS:
        raise ContactRecordInvalid(
            f"The record is {len(raw)} characters long; the limit is {MAX_RECORD_CHARS}."
        )
    if not isinstance(parsed, Mapping):
        raise ContactRecordInvalid("The record is not a contact record (a JSON object).")
    contact_id = parsed.get("ContactId")
    if not isinstance(contact_id, str) or not contact_id.strip():
        raise ContactRecordInvalid("The record has no ContactId; it is not a contact record.")
    instance_arn = parsed.get("InstanceARN")
    if not isinstance(instance_arn, str) or not instance_arn.strip():
        raise ContactRecordInvalid(
            "The record has no InstanceARN, so no domain can be chosen for it.", contact_id
        )
    if not is_instance_arn(instance_arn.strip()):
        raise ContactRecordInvalid(
            f"InstanceARN {instance_arn} is not a contact-centre instance ARN "
            "(arn:aws:connect:REGION:ACCOUNT:instance/ID).",
            contact_id,
        )
    channel = parsed.get("Channel")
    if channel is not None and channel not in CHANNELS:
        raise ContactRecordInvalid(
            f"Channel {channel!r} is not one of {', '.join(sorted(CHANNELS))}.", contact_id
        )
    return ContactRecord(
        contact_id=contact_id,
        instance_arn=instance_arn.strip(),
        channel=channel,
        customer_endpoint=_endpoint(parsed.get("CustomerEndpoint"), contact_id),
        initiation=_timestamp(parsed, "InitiationTimestamp", contact_id),
        last_update=_timestamp(parsed, "LastUpdateTimestamp", contact_id),
        source=parsed,
        raw=raw,
    )


def _endpoint(value: Any, contact_id: str) -> Endpoint | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ContactRecordInvalid(
            "CustomerEndpoint must be an object with Address and Type.", contact_id
        )
    address, kind = value.get("Address"), value.get("Type")
    if not isinstance(kind, str) or kind not in ENDPOINT_TYPES:
        raise ContactRecordInvalid(
            f"CustomerEndpoint.Type {kind!r} is not one of {', '.join(sorted(ENDPOINT_TYPES))}.",
            contact_id,
        )
    if not isinstance(address, str) or not address.strip():
        raise ContactRecordInvalid("CustomerEndpoint has no Address.", contact_id)
    address = address.strip()
    if kind == "TELEPHONE_NUMBER" and not _is_phone(address):
        raise ContactRecordInvalid(
            f"CustomerEndpoint.Address cannot be read as a telephone number ({kind}).",
            contact_id,
        )
    if kind == "EMAIL_ADDRESS" and not _is_email(address):
        raise ContactRecordInvalid(
            f"CustomerEndpoint.Address cannot be read as an email address ({kind}).", contact_id
        )
    return Endpoint(address=address, type=kind)


def _is_phone(address: str) -> bool:
    digits = [ch for ch in address if ch.isdigit()]
    allowed = set("0123456789+-() .")
    return (
        3 <= len(digits) <= 15 and set(address) <= allowed and bool(normalize_phone(address, "US"))
    )


def _is_email(address: str) -> bool:
    local, at, host = address.rpartition("@")
    return bool(at and local and "." in host and " " not in address)


def _timestamp(record: Mapping[str, Any], name: str, contact_id: str) -> datetime | None:
    value = record.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ContactRecordInvalid(f"{name} must be an ISO 8601 timestamp string.", contact_id)
    return parse_timestamp(value, name, contact_id)


def parse_timestamp(value: str, name: str, contact_id: str | None = None) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ContactRecordInvalid(
            f"{name} {value!r} is not an ISO 8601 timestamp (yyyy-mm-ddThh:mm:ssZ).", contact_id
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
