"""The agent's profile form and search box: which fields the form has, how each is checked on
the server, how a filled form becomes CreateProfile/UpdateProfile changes (and an edit is saved
only if nothing it changes was changed meanwhile), and how a search text is read (a phone
number, an email, a name, an account number or a profile id).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import FormData

from openprofiles.context import Tx
from openprofiles.normalize import ContentType, normalize
from openprofiles.profiles import service as profiles
from openprofiles.profiles.keys import EMAIL_FIELDS, PHONE_FIELDS
from openprofiles.profiles.models import ProfileRecord

# Limits from the botocore model of CreateProfile/UpdateProfile (1-255; 1-1000 for
# AdditionalInformation).
MAX_LENGTH = 255
MAX_ADDITIONAL_INFORMATION = 1000
MAX_ATTRIBUTES = 100

EMAIL_SHAPE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
PHONE_CHARACTERS = re.compile(r"^[0-9+().\-\s/x#*]+$", re.IGNORECASE)
PROFILE_ID = re.compile(r"^[0-9a-fA-F]{32}$")
PHONE_LIKE = re.compile(r"^[0-9+().\-\s]+$")


@dataclass(frozen=True)
class Field:
    name: str
    label: str
    kind: str = "text"  # text | email | tel | textarea | select
    choices: tuple[tuple[str, str], ...] = ()
    hint: str = ""
    autocomplete: str = "off"


GENDERS = (
    ("", "Not given"),
    ("MALE", "Male"),
    ("FEMALE", "Female"),
    ("UNSPECIFIED", "Unspecified"),
)
PARTY_TYPES = (
    ("", "Not given"),
    ("INDIVIDUAL", "Individual"),
    ("BUSINESS", "Business"),
    ("OTHER", "Other"),
)

# (section title, fields): the standard profile fields an agent edits, in reading order.
SECTIONS: tuple[tuple[str, tuple[Field, ...]], ...] = (
    (
        "Name",
        (
            Field("FirstName", "First name"),
            Field("MiddleName", "Middle name"),
            Field("LastName", "Last name"),
            Field("BusinessName", "Business name"),
        ),
    ),
    (
        "Contact details",
        (
            Field("PhoneNumber", "Phone number", "tel", hint="Any format, e.g. +1 206 555 0100"),
            Field("MobilePhoneNumber", "Mobile phone number", "tel"),
            Field("HomePhoneNumber", "Home phone number", "tel"),
            Field("BusinessPhoneNumber", "Business phone number", "tel"),
            Field("EmailAddress", "Email address", "email"),
            Field("PersonalEmailAddress", "Personal email address", "email"),
            Field("BusinessEmailAddress", "Business email address", "email"),
        ),
    ),
    (
        "About",
        (
            Field("AccountNumber", "Account number"),
            Field("BirthDate", "Birth date", hint="As the customer gives it, e.g. 1985-04-12"),
            Field("Gender", "Gender", "select", GENDERS),
            Field("PartyType", "Party type", "select", PARTY_TYPES),
            Field("AdditionalInformation", "Additional information", "textarea"),
        ),
    ),
)
ADDRESS_FORM_PARTS = (
    ("Address1", "Address line 1"),
    ("Address2", "Address line 2"),
    ("City", "City"),
    ("State", "State"),
    ("Province", "Province"),
    ("County", "County"),
    ("PostalCode", "Postal code"),
    ("Country", "Country"),
)
STRING_FORM_FIELDS = tuple(f.name for _, fields in SECTIONS for f in fields)
ATTRIBUTES_FIELD = "Attributes"
# The edit form carries the values it showed in hidden fields with this prefix. A save writes
# only what the agent changed from those (a change made elsewhere meanwhile is kept, not undone
# by stale values of the form), checks only what changed (a value the API accepted that this
# form would refuse does not block saving another field), and refuses a change to a field that
# someone else changed since the form was shown.
SHOWN_PREFIX = "shown."


def values_from_profile(fields: dict[str, Any]) -> dict[str, str]:
    """The form's values for an existing profile, as the form would send them back."""
    values = {name: str(fields.get(name, "")) for name in STRING_FORM_FIELDS}
    address = fields.get("Address") or {}
    for part, _ in ADDRESS_FORM_PARTS:
        values[f"Address.{part}"] = str(address.get(part, ""))
    attributes = fields.get("Attributes") or {}
    values[ATTRIBUTES_FIELD] = "\n".join(f"{k} = {v}" for k, v in attributes.items())
    return {name: _as_sent(value) for name, value in values.items()}


def form_names() -> tuple[str, ...]:
    return (
        *STRING_FORM_FIELDS,
        *(f"Address.{part}" for part, _ in ADDRESS_FORM_PARTS),
        ATTRIBUTES_FIELD,
    )


def values_from_form(form: FormData, prefix: str = "") -> dict[str, str] | None:
    """The form's values (with `prefix`, the values it showed); None when the form has none
    of them (a form without the shown values)."""
    if not any(prefix + name in form for name in form_names()):
        return None

    def text(name: str) -> str:
        value = form.get(prefix + name)
        return _as_sent(value) if isinstance(value, str) else ""

    return {name: text(name) for name in form_names()}


def _as_sent(value: str) -> str:
    """A value as a form sends it back: browsers send a textarea's line breaks as CRLF (they
    are LF as shown), and the form trims what is typed."""
    return value.replace("\r\n", "\n").replace("\r", "\n").strip()


def changed_fields(shown: dict[str, str], values: dict[str, str]) -> set[str]:
    """The form's fields the agent changed from what the form showed."""
    return {name for name in form_names() if values.get(name, "") != shown.get(name, "")}


def parse_attributes(text: str) -> tuple[dict[str, str], str | None]:
    attributes: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name, sep, value = line.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name or not value:
            return {}, f"Line {number}: write each attribute as name = value."
        if len(name) > MAX_LENGTH or len(value) > MAX_LENGTH:
            return {}, f"Line {number}: names and values are at most {MAX_LENGTH} characters."
        attributes[name] = value
    if len(attributes) > MAX_ATTRIBUTES:
        return {}, f"A profile holds at most {MAX_ATTRIBUTES} attributes here."
    return attributes, None


def validate(
    values: dict[str, str], phone_region: str, only: set[str] | None = None
) -> dict[str, str]:
    """Field name → what is wrong with it and what to do; empty when the form is valid.
    `only`: check just these fields (the ones an edit changed)."""
    errors = _problems(values, phone_region)
    return errors if only is None else {k: v for k, v in errors.items() if k in only}


def _problems(values: dict[str, str], phone_region: str) -> dict[str, str]:
    errors: dict[str, str] = {}
    for name in STRING_FORM_FIELDS:
        value = values.get(name, "")
        limit = MAX_ADDITIONAL_INFORMATION if name == "AdditionalInformation" else MAX_LENGTH
        if len(value) > limit:
            errors[name] = f"Use at most {limit} characters (this has {len(value)})."
        elif value and name in EMAIL_FIELDS and not EMAIL_SHAPE.match(value):
            errors[name] = "Enter an email address like name@example.com."
        elif value and name in PHONE_FIELDS and not _phone_ok(value, phone_region):
            errors[name] = (
                "Enter a phone number, e.g. +1 206 555 0100 or (206) 555-0100; "
                "use the +country code for numbers from other countries."
            )
    allowed = {
        "Gender": {c for c, _ in GENDERS},
        "PartyType": {c for c, _ in PARTY_TYPES},
    }
    for name, choices in allowed.items():
        if values.get(name, "") not in choices:
            errors[name] = "Choose one of the listed values."
    for part, _ in ADDRESS_FORM_PARTS:
        value = values.get(f"Address.{part}", "")
        if len(value) > MAX_LENGTH:
            errors[f"Address.{part}"] = f"Use at most {MAX_LENGTH} characters."
    _, problem = parse_attributes(values.get(ATTRIBUTES_FIELD, ""))
    if problem:
        errors[ATTRIBUTES_FIELD] = problem
    return errors


def _phone_ok(value: str, region: str) -> bool:
    if not PHONE_CHARACTERS.match(value):
        return False
    normal = normalize(ContentType.PHONE_NUMBER, value, phone_region=region)
    return sum(ch.isdigit() for ch in normal) >= 5


def creation_fields(values: dict[str, str]) -> dict[str, Any]:
    """CreateProfile members from a valid form (empty fields left out)."""
    fields: dict[str, Any] = {name: values[name] for name in STRING_FORM_FIELDS if values[name]}
    address = {
        part: values[f"Address.{part}"]
        for part, _ in ADDRESS_FORM_PARTS
        if values[f"Address.{part}"]
    }
    if address:
        fields["Address"] = address
    attributes, _ = parse_attributes(values[ATTRIBUTES_FIELD])
    if attributes:
        fields["Attributes"] = attributes
    return fields


CHANGED_MEANWHILE = (
    "Someone else changed this field since you opened the form. Reload the page to see the "
    "profile as it is now, then make your change again."
)


def update_changes(
    current: dict[str, Any], shown: dict[str, str], values: dict[str, str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """(UpdateProfile members for what the agent changed from what the form showed — "" clears
    a value, API semantics —, field → CHANGED_MEANWHILE for a changed field whose stored value
    is no longer the one shown)."""
    now = values_from_profile(current)
    changed = changed_fields(shown, values)
    conflicts = {
        name: CHANGED_MEANWHILE
        for name in changed
        if name != ATTRIBUTES_FIELD and now[name] != shown.get(name, "")
    }
    changes: dict[str, Any] = {name: values[name] for name in STRING_FORM_FIELDS if name in changed}
    address = {
        part: values[f"Address.{part}"]
        for part, _ in ADDRESS_FORM_PARTS
        if f"Address.{part}" in changed
    }
    if address:
        changes["Address"] = address
    if ATTRIBUTES_FIELD in changed:
        # Line by line against what was shown, so a line the agent did not touch is not
        # written back (its name may hold "=", its value a line break: the text form of
        # attributes cannot carry every value exactly).
        before, _ = parse_attributes(shown.get(ATTRIBUTES_FIELD, ""))
        after, _ = parse_attributes(values[ATTRIBUTES_FIELD])
        attribute_changes = {k: v for k, v in after.items() if before.get(k) != v}
        attribute_changes.update({k: "" for k in before if k not in after})
        stored = current.get("Attributes") or {}
        if any(str(stored.get(k, "")) != before.get(k, "") for k in attribute_changes):
            conflicts[ATTRIBUTES_FIELD] = CHANGED_MEANWHILE
        if attribute_changes:
            changes["Attributes"] = attribute_changes
    return changes, conflicts


def save_edit(
    tx: Tx, *, domain_name: str, profile_id: str, shown: dict[str, str], values: dict[str, str]
) -> tuple[ProfileRecord, dict[str, str]]:
    """Save an edit form in `tx`, a write transaction: (the profile as saved, {}), or (the
    profile as it is, field → CHANGED_MEANWHILE) with nothing written.

    The check and the write are one step: the profile is read with its row locked (PostgreSQL:
    another writer's save waits for this one's commit; SQLite: the write transaction holds the
    single writer already), so no save commits between the check and the write. Checked in a
    transaction of its own, two agents saving the same field at once both passed the check and
    the last write won."""
    record = profiles.get_locked_profile(tx, domain_name=domain_name, profile_id=profile_id)
    changes, conflicts = update_changes(record.fields, shown, values)
    if conflicts or not changes:
        return record, conflicts
    saved = profiles.update_profile(
        tx, domain_name=domain_name, profile_id=record.profile_id, changes=changes
    )
    return saved, {}


# ---------------------------------------------------------------------------- search

PREDEFINED_SEARCH_KEYS = (
    ("_phone", "Phone number"),
    ("_email", "Email address"),
    ("_fullName", "Full name"),
    ("_account", "Account number"),
    ("_profileId", "Profile id"),
)


def search_keys_for(text: str) -> list[str]:
    """The keys to try, in order, for a search text without an explicit key: a profile id is 32
    hex digits, an email has '@', a phone number is digits and +()-. ; anything else is a full
    name and, failing that, an account number."""
    value = text.strip()
    if PROFILE_ID.match(value):
        return ["_profileId"]
    if "@" in value:
        return ["_email"]
    if PHONE_LIKE.match(value) and sum(ch.isdigit() for ch in value) >= 3:
        # Account numbers are often all digits too.
        return ["_phone", "_account"]
    return ["_fullName", "_account"]
