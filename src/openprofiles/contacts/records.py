"""Reading contact records (spec §3.1): splitting a body or file into records and checking each
one is a usable Amazon Connect contact record.

A body is one record (a JSON object), a JSON array of records, or JSON lines. A body that is
none of these (a pretty-printed array with a stray comma, a truncated record, `null` or `42`,
lines none of which is JSON) is invalid as a whole: it is never cut into line fragments, and
nothing of it is kept. In an array or in JSON lines, an element or a line that is not a record
(not JSON, or JSON that is not an object) is a record rejected alone, and the others apply.

Each record must carry `ContactId` and `InstanceARN` (an instance ARN) as strings, the ContactId
at most 255 characters without white space at either end (it is matched exactly, never trimmed);
`Channel`, when present, must be one of the channels; `CustomerEndpoint`, when present, must be
an `{Address, Type}` object with a non-blank Address; `PreviousContactId`, `InitialContactId`
and `RelatedContactId`, when present and not "", must be ContactIds by the same rules (text,
not blank, at most 255 characters, no white space at either end); timestamps must be ISO 8601
strings whose time in UTC is in years 1-9999; no
text of the record may hold a lone UTF-16 surrogate (digests and sealing encode it to UTF-8) or
a NUL (U+0000: no field of a contact holds one, and the API refuses it in every value, so a
ContactId or an email address with one would be a key or a profile field no call can give);
and, as PutProfileObject's Object, the record may be at most MAX_OBJECT_CHARS long
and nest arrays and objects at most MAX_JSON_DEPTH deep. A field of the wrong JSON type makes
the record invalid like any other fault, never the batch. A rejected record names its ContactId
whenever it can be read.

An Address that cannot be read as what its Type says (a possible phone number for
TELEPHONE_NUMBER, an email address for EMAIL_ADDRESS: a withheld caller's "anonymous",
"Restricted", "+1000") does not make the record invalid: the record counts as one without a
customer endpoint (`ContactRecord.unreadable_endpoint`), placed only by a link as such a record
is (contacts.links), and its endpoint is not mapped onto a profile.

A contact-start event may carry the contact's attributes (`Attributes`, text to text, as the
contact record's); `profileSearchKey` and `profileSearchValue` among them (both or neither) say
what the agent's screen pop searches for instead of the caller's phone number or email
(`screen_pop_search`, checked as SearchProfiles checks its KeyName and Values).

A file is read a record at a time (`read_record`, over ingest.bulk.read_records' records), a
body or a stream record's data whole (`split_records`): both check each record alike.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import phonenumbers

from openprofiles.contacts.models import (
    CHANNELS,
    ENDPOINT_TYPES,
    BodyInvalid,
    ContactRecord,
    ContactRecordInvalid,
    Endpoint,
)
from openprofiles.errors import shown_value
from openprofiles.ingest import MAX_OBJECT_CHARS
from openprofiles.integrations.models import is_instance_arn
from openprofiles.json_text import (
    JsonTextError,
    check_depth,
    decode_record,
    has_lone_surrogate,
    may_nest_too_deep,
    split_json_records,
)
from openprofiles.normalize import normalize_phone

# A ContactId is `_ctrContactId`'s value, and a profile key value is 1-255 characters in the
# API (AddProfileKey, SearchProfiles): a longer one could never be searched or forced. Amazon
# Connect's own ContactIds are UUIDs (its model allows 256).
MAX_CONTACT_ID_CHARS = 255
# Where a record names the contact it continues, the closest first (contacts.links follows
# them). Each, when present and not "", must be a ContactId by the record's own rules.
CONTINUED_FIELDS = ("PreviousContactId", "InitialContactId", "RelatedContactId")

Item = tuple[str, Any]

# The contact attributes that override the agent application's automatic search (Amazon
# Connect's screen pop): a key SearchProfiles can search (its KeyName: the model's `name`
# pattern, at most 64 characters) and a value as one of its Values (1-255 characters).
SEARCH_KEY_ATTRIBUTE = "profileSearchKey"
SEARCH_VALUE_ATTRIBUTE = "profileSearchValue"
SEARCH_KEY_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
MAX_SEARCH_VALUE_CHARS = MAX_CONTACT_ID_CHARS

LONE_SURROGATE = (
    "The record holds a lone UTF-16 surrogate (a \\uD800-\\uDFFF escape without its pair), "
    "which is not Unicode text."
)
NUL_CHARACTER = (
    "The record holds a NUL character (U+0000, a \\u0000 escape), which no field of a contact "
    "record holds and the API refuses in every value; send the record without it."
)


def split_records(text: str) -> list[Item]:
    """(raw text, parsed JSON or a ContactRecordInvalid) for every record of a request body or
    a file.

    Raises BodyInvalid when the text is neither a JSON value, a JSON array nor JSON lines."""
    stripped = text.strip()
    if not stripped:
        return []
    try:
        items: list[Item] = [
            (raw, _invalid_json(value) if isinstance(value, JsonTextError) else value)
            for raw, value in split_json_records(stripped)
        ]
    except JsonTextError as exc:
        raise BodyInvalid(f"{_NEITHER}: {exc.message.rstrip('.')}") from None
    if len(items) == 1 and not stripped.startswith("[") and not isinstance(items[0][1], Mapping):
        # One JSON value that is no record (null, 42, "text"): not a body of records, refused
        # whole like text that is not JSON. (An array's element or a line of JSON lines that
        # is not an object is a record rejected alone: the others apply.)
        raise BodyInvalid(f"{_NEITHER}: it is {_json_kind(items[0][1])}")
    # Only a text with an escape (or one that is not UTF-8 itself) can hold a lone surrogate,
    # and only one with more brackets than MAX_JSON_DEPTH can nest too deeply: the common body
    # skips the per-record checks.
    surrogates = "\\u" in stripped or not _encodes(stripped)
    if surrogates or may_nest_too_deep(stripped):
        return [_item(raw, parsed, surrogates=surrogates) for raw, parsed in items]
    return items


_NEITHER = (
    "neither a JSON contact record, a JSON array of records nor JSON lines (one record a line)"
)


def _json_kind(value: Any) -> str:
    """What a JSON value that is not an object is, for a message (never the value itself)."""
    if value is None:
        return "JSON null"
    if isinstance(value, bool):
        return "a JSON boolean"
    if isinstance(value, str):
        return "a JSON string"
    return "a JSON number"


def read_record(text: str) -> Item:
    """(raw text, parsed JSON or a ContactRecordInvalid) of one record's JSON text: a line of a
    file of JSON lines, an element of an array (as ingest.bulk.read_records gives them). A text
    that is not JSON is an invalid record; checked as `split_records` checks each record."""
    try:
        parsed = decode_record(text)
    except JsonTextError as exc:
        return _safe_text(text), _invalid_json(exc)
    return _item(text, parsed, surrogates="\\u" in text or not _encodes(text))


def split_body(text: str) -> list[Item]:
    """`split_records` for a text that is kept whatever it holds (a stream record's data): one
    that is neither JSON nor JSON lines is one invalid record, not an error."""
    try:
        return split_records(text)
    except BodyInvalid as exc:
        return [(_safe_text(text.strip()), ContactRecordInvalid(f"The record is {exc.what}."))]


def _invalid_json(error: JsonTextError) -> ContactRecordInvalid:
    return ContactRecordInvalid(error.message)


def _item(raw: str, parsed: Any, *, surrogates: bool = True) -> Item:
    """An item whose raw text can be stored (UTF-8) and whose parsed record, if it nests too
    deeply or (when `surrogates` says its text may) held lone surrogates, is replaced by a
    marked one that `parse_contact_record` rejects: the record can still be routed to its
    instance's dead-letter queue, and its rejection names its ContactId.

    Depth first: the surrogate walk recurses, which a record nested hundreds deep would
    overflow."""
    raw = _safe_text(raw)
    if isinstance(parsed, Mapping) and may_nest_too_deep(raw):
        try:
            check_depth(parsed, "The record")
        except JsonTextError as exc:
            return raw, _Refused(exc.message, parsed)
    if surrogates and isinstance(parsed, Mapping) and _has_lone_surrogate(parsed):
        return raw, _LoneSurrogates(_without_surrogates(parsed))
    return raw, parsed


class _LoneSurrogates(dict[str, Any]):
    """A record that held lone surrogates, with each replaced by U+FFFD."""


class _Refused(dict[str, str]):
    """A record refused as a whole (`reason`), of which only what routes it and names it is
    kept: its InstanceARN and ContactId, when they are text without lone surrogates. Nothing
    else of it is walked again."""

    def __init__(self, reason: str, record: Mapping[str, Any]) -> None:
        super().__init__(
            (name, value)
            for name in ("ContactId", "InstanceARN")
            if isinstance(value := record.get(name), str) and _encodes(value)
        )
        self.reason = reason


def _readable_id(record: Any) -> str | None:
    """The ContactId of a record being rejected, when it has one that can be shown as its
    rejection's ContactId: text, not blank, at most MAX_CONTACT_ID_CHARS long, and storable —
    not one whose lone surrogates were replaced (it is not the record's)."""
    if not isinstance(record, Mapping):
        return None
    contact_id = record.get("ContactId")
    if (
        isinstance(contact_id, str)
        and contact_id.strip()
        and len(contact_id) <= MAX_CONTACT_ID_CHARS
        and _encodes(contact_id)
        and "\x00" not in contact_id
        and not (isinstance(record, _LoneSurrogates) and "\ufffd" in contact_id)
    ):
        return contact_id
    return None


_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _encodes(text: str) -> bool:
    return not has_lone_surrogate(text)


def _safe_text(text: str) -> str:
    """`text` with each lone surrogate written as its JSON escape (`\\udXXX`): the same JSON,
    and storable."""
    if _encodes(text):
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _has_lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return not _encodes(value)
    if isinstance(value, Mapping):
        return any(
            _has_lone_surrogate(key) or _has_lone_surrogate(item) for key, item in value.items()
        )
    if isinstance(value, list):
        return any(_has_lone_surrogate(item) for item in value)
    return False


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, Mapping):
        return any(_has_nul(key) or _has_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False


def _without_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, Mapping):
        return {_without_surrogates(k): _without_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_surrogates(item) for item in value]
    return value


def parse_contact_record(parsed: Any, raw: str, *, phone_region: str = "US") -> ContactRecord:
    """The contact record, or ContactRecordInvalid saying what is wrong with it.

    `phone_region` reads a telephone number without a country code, as ingestion normalises
    it (settings.default_phone_region, OPENPROFILES_DEFAULT_PHONE_REGION): a national number is
    a possible number of that region's."""
    if isinstance(parsed, ContactRecordInvalid):
        raise parsed
    if len(raw) > MAX_OBJECT_CHARS:
        raise ContactRecordInvalid(
            f"The record is {len(raw)} characters long; the limit is {MAX_OBJECT_CHARS}.",
            _readable_id(parsed),
        )
    if isinstance(parsed, _Refused):
        raise ContactRecordInvalid(parsed.reason, _readable_id(parsed))
    if not isinstance(parsed, Mapping):
        raise ContactRecordInvalid("The record is not a contact record (a JSON object).")
    contact_id = parsed.get("ContactId")
    # A record not from split_records or read_record (a contact event, a replayed one) is
    # checked here: its depth first, as the surrogate walk recurses.
    if not isinstance(parsed, _LoneSurrogates) and may_nest_too_deep(raw):
        try:
            check_depth(parsed, "The record")
        except JsonTextError as exc:
            raise ContactRecordInvalid(exc.message, _readable_id(parsed)) from None
    escaped = "\\u" in raw
    if isinstance(parsed, _LoneSurrogates) or (
        (escaped or not _encodes(raw)) and _has_lone_surrogate(parsed)
    ):
        raise ContactRecordInvalid(LONE_SURROGATE, _readable_id(parsed))
    # A NUL can only be written in JSON as the escape (a text holding the character itself is
    # not JSON): the common record, without one, skips the walk.
    if ((escaped and "\\u0000" in raw) or "\x00" in raw) and _has_nul(parsed):
        raise ContactRecordInvalid(NUL_CHARACTER, _readable_id(parsed))
    if contact_id is None or contact_id == "":
        raise ContactRecordInvalid("The record has no ContactId; it is not a contact record.")
    if not isinstance(contact_id, str) or not contact_id.strip():
        raise ContactRecordInvalid("ContactId must be a non-blank string.")
    if len(contact_id) > MAX_CONTACT_ID_CHARS:
        # Not echoed whole as the rejection's ContactId: the message shows its beginning.
        raise ContactRecordInvalid(
            f"ContactId {shown_value(contact_id)} is {len(contact_id)} characters long; the "
            f"limit is {MAX_CONTACT_ID_CHARS}, a profile key value's (SearchProfiles, "
            "AddProfileKey), so that the contact can be searched and linked."
        )
    if contact_id != contact_id.strip():
        # Rejected, not trimmed: ContactIds are compared exactly (the `_ctrContactId` key, the
        # dedupe), so " abc" would silently be another contact than "abc", and trimming would
        # store a record that says otherwise than its own ContactId.
        raise ContactRecordInvalid(
            f"ContactId {shown_value(contact_id)} begins or ends with white space; a ContactId is "
            "matched exactly, so send it without the white space.",
            contact_id,
        )
    instance_arn = parsed.get("InstanceARN")
    if instance_arn is None or instance_arn == "":
        raise ContactRecordInvalid(
            "The record has no InstanceARN, so no domain can be chosen for it.", contact_id
        )
    if not isinstance(instance_arn, str) or not is_instance_arn(instance_arn.strip()):
        raise ContactRecordInvalid(
            f"InstanceARN {shown_value(instance_arn)} is not a contact-centre instance ARN "
            "(arn:aws:connect:REGION:ACCOUNT:instance/ID).",
            contact_id,
        )
    channel = parsed.get("Channel")
    # The type first: a list or an object is not hashable, so not even a set member test.
    if channel is not None and (not isinstance(channel, str) or channel not in CHANNELS):
        raise ContactRecordInvalid(
            f"Channel {shown_value(channel)} is not one of {', '.join(sorted(CHANNELS))}.",
            contact_id,
        )
    for name in CONTINUED_FIELDS:
        # Three look-ups for a valid record; the checks only for a field that is present.
        if (continued := parsed.get(name)) is not None and continued != "":
            _check_continued(name, continued, contact_id)
    endpoint, unreadable = _endpoint(parsed.get("CustomerEndpoint"), contact_id, phone_region)
    return ContactRecord(
        contact_id=contact_id,
        instance_arn=instance_arn.strip(),
        channel=channel,
        customer_endpoint=endpoint,
        initiation=_timestamp(parsed, "InitiationTimestamp", contact_id),
        last_update=_timestamp(parsed, "LastUpdateTimestamp", contact_id),
        source=parsed,
        raw=raw,
        unreadable_endpoint=unreadable,
    )


def _check_continued(name: str, value: Any, contact_id: str) -> None:
    """ContactRecordInvalid when `value`, the record's `name` (a CONTINUED_FIELDS one, present
    and not ""), cannot be a ContactId, by the rules the record's own ContactId follows. Not
    ignored: contacts.links would then say the contact "continues no earlier contact", and a
    record without an endpoint be dead-lettered for want of a link it names."""
    if not isinstance(value, str) or not value.strip():
        raise ContactRecordInvalid(
            f"{name} {shown_value(value)} is not a ContactId: it must be a non-blank string "
            "(the ContactId of the contact this one continues), or absent or null.",
            contact_id,
        )
    if len(value) > MAX_CONTACT_ID_CHARS:
        raise ContactRecordInvalid(
            f"{name} {shown_value(value)} is {len(value)} characters long; a ContactId is at "
            f"most {MAX_CONTACT_ID_CHARS}.",
            contact_id,
        )
    if value != value.strip():
        raise ContactRecordInvalid(
            f"{name} {shown_value(value)} begins or ends with white space; a ContactId is "
            "matched exactly, so send it without the white space.",
            contact_id,
        )


def screen_pop_search(record: Mapping[str, Any]) -> tuple[str, str] | None:
    """The (key name, value) the record's contact attributes ask the screen pop to search by
    (`profileSearchKey`, `profileSearchValue`), or None when they ask for none: an attribute
    set to "" is not set (as a flow clears one). ContactRecordInvalid saying what is wrong —
    never the value, a customer's — when the attributes are not text to text, only one of the
    two is set, or they are not a key and a value SearchProfiles takes."""
    contact_id = _readable_id(record)
    attributes = record.get("Attributes")
    if attributes is None:
        return None
    if not isinstance(attributes, Mapping) or not all(
        isinstance(v, str) for v in attributes.values()
    ):
        raise ContactRecordInvalid(
            "Attributes must be an object whose values are strings (the contact's attributes).",
            contact_id,
        )
    key = attributes.get(SEARCH_KEY_ATTRIBUTE) or ""
    value = attributes.get(SEARCH_VALUE_ATTRIBUTE) or ""
    if not key and not value:
        return None
    if not key or not value:
        given, missing = (
            (SEARCH_KEY_ATTRIBUTE, SEARCH_VALUE_ATTRIBUTE)
            if key
            else (SEARCH_VALUE_ATTRIBUTE, SEARCH_KEY_ATTRIBUTE)
        )
        raise ContactRecordInvalid(
            f"Attributes.{given} is set without Attributes.{missing}; the screen pop searches "
            "by a key and a value, so set both or neither.",
            contact_id,
        )
    if not SEARCH_KEY_NAME.fullmatch(key):
        raise ContactRecordInvalid(
            # Not echoed: a misconfigured flow may have put the customer's value there.
            f"Attributes.{SEARCH_KEY_ATTRIBUTE} is not a key name: 1 to 64 letters, digits, '_' "
            "and '-', as SearchProfiles' KeyName (e.g. _phone, _account).",
            contact_id,
        )
    if len(value) > MAX_SEARCH_VALUE_CHARS:
        raise ContactRecordInvalid(
            f"Attributes.{SEARCH_VALUE_ATTRIBUTE} is {len(value)} characters long; the limit is "
            f"{MAX_SEARCH_VALUE_CHARS}, as a SearchProfiles value's.",
            contact_id,
        )
    return key, value


def _endpoint(value: Any, contact_id: str, phone_region: str) -> tuple[Endpoint | None, str | None]:
    """The record's customer endpoint, or None; and, when its Address cannot be read as what
    its Type says, that Type (the endpoint then None). ContactRecordInvalid when it is no
    `{Address, Type}` object, of a known Type and a non-blank Address.

    An Address that cannot be read is a withheld or anonymous caller's ("anonymous",
    "Restricted", "+1000", as carriers and Amazon Connect give them), not a broken record: it
    finds no profile, so the record counts as one without an endpoint. Rejected, such a contact
    was dead-lettered for good, even linked to a profile (AddProfileKey `_ctrContactId`) that a
    contact with no endpoint at all lands on. So, as that one: it goes to its `_ctrContactId`'s
    profile, or the profile of the contact it continues, and otherwise it creates no profile
    and is dead-lettered (`no_profile`), or waits for the contact it continues — the path of a
    record without an endpoint today (contacts.links), which `openprofiles dlq retry` applies
    once an agent links the contact. A start event of it links alike, or nothing, saying why."""
    if value is None:
        return None, None
    if not isinstance(value, Mapping):
        raise ContactRecordInvalid(
            "CustomerEndpoint must be an object with Address and Type.", contact_id
        )
    address, kind = value.get("Address"), value.get("Type")
    if not isinstance(kind, str) or kind not in ENDPOINT_TYPES:
        raise ContactRecordInvalid(
            f"CustomerEndpoint.Type {shown_value(kind)} is not one of "
            f"{', '.join(sorted(ENDPOINT_TYPES))}.",
            contact_id,
        )
    if address is None or address == "":
        raise ContactRecordInvalid("CustomerEndpoint has no Address.", contact_id)
    if not isinstance(address, str) or not address.strip():
        raise ContactRecordInvalid(
            "CustomerEndpoint.Address must be a non-blank string.", contact_id
        )
    address = address.strip()
    if kind == "TELEPHONE_NUMBER" and not _is_phone(address, phone_region):
        return None, kind
    if kind == "EMAIL_ADDRESS" and not _is_email(address):
        return None, kind
    return Endpoint(address=address, type=kind), None


_PHONE_CHARACTERS = frozenset("0123456789+-() .")
# What normalize_phone makes of a North American number, which it reads without libphonenumber:
# country code 1 and ten digits, the area code's first 2-9 — a possible number.
_NORTH_AMERICAN_E164 = re.compile(r"\+1[2-9][0-9]{9}")


def _is_phone(address: str, region: str) -> bool:
    """Whether `address` is a possible phone number (libphonenumber: a known country code and a
    length its numbers can have), written with digits, '+' first only, and separators; numbers
    without a country code are read as `region`'s, as normalize_phone reads them."""
    if not set(address) <= _PHONE_CHARACTERS or "+" in address[1:]:
        return False
    # The common number skips a second libphonenumber parse, the costliest step of a record.
    if _NORTH_AMERICAN_E164.fullmatch(normalize_phone(address, region)):
        return True
    return _possible_phone(address, region)


# Not memoised: a cache would keep customers' numbers in the process for its lifetime.
def _possible_phone(address: str, region: str) -> bool:
    try:
        number = phonenumbers.parse(address, region)
    except phonenumbers.NumberParseException:
        return False
    return phonenumbers.is_possible_number(number)


def _is_email(address: str) -> bool:
    """One '@' between a non-empty local part and a host name of dot-separated labels, none
    empty, and no white space: strict enough to refuse what cannot be an address, not the
    RFC 5322 grammar."""
    local, at, host = address.partition("@")
    labels = host.split(".")
    return (
        bool(at and local)
        and "@" not in host
        and len(labels) >= 2
        and all(labels)
        and not any(ch.isspace() for ch in address)
    )


def _timestamp(record: Mapping[str, Any], name: str, contact_id: str) -> datetime | None:
    value = record.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ContactRecordInvalid(f"{name} must be an ISO 8601 timestamp string.", contact_id)
    return parse_timestamp(value, name, contact_id)


def contact_start(record: Mapping[str, Any]) -> datetime | None:
    """When the contact started: the record's InitiationTimestamp in UTC; None when it has none
    or it cannot be read (an object of another kind, written through PutProfileObject)."""
    return timestamp_or_none(record.get("InitiationTimestamp"))


def timestamp_or_none(value: Any) -> datetime | None:
    """`value` read as a timestamp in UTC; None when it is not a non-empty string or not one."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_timestamp(value, "timestamp")
    except ContactRecordInvalid:
        return None


def parse_timestamp(value: str, name: str, contact_id: str | None = None) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ContactRecordInvalid(
            f"{name} {shown_value(value)} is not an ISO 8601 timestamp (yyyy-mm-ddThh:mm:ssZ).",
            contact_id,
        ) from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        # A valid ISO 8601 time at the ends of the calendar whose UTC time is not in years
        # 1-9999 (9999-12-31T23:59:59-05:00, 0001-01-01T00:00+01:00): out of range, not
        # malformed.
        raise ContactRecordInvalid(
            f"{name} {shown_value(value)} is out of range: in UTC it falls outside the years "
            "0001 to 9999. Send the contact's real time.",
            contact_id,
        ) from None
