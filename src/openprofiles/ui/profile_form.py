"""The agent's profile form and search box: which fields the form has, how each is checked on
the server, how a filled form becomes CreateProfile/UpdateProfile changes (and an edit is saved
only if nothing it changes was changed meanwhile), and how a search text is read (a phone
number, an email, a name, an account number or a profile id).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import phonenumbers
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

    @property
    def input_type(self) -> str:
        """The input's type: an email field is a text input (with inputmode="email" for the
        keyboard). Chromium rewrites an email input's internationalised domain into punycode
        (zoe@exämple.com became zoe@xn--exmple-cua.com), and saved that over the stored
        address when the agent changed another field, or created the profile with it."""
        return "text" if self.kind == "email" else self.kind

    @property
    def inputmode(self) -> str:
        return "email" if self.kind == "email" else ""


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
# What the profile page shows besides the form's fields: values the API and ingestion set that
# the form does not edit. A free-text gender or party type (GenderString, PartyTypeString: what a
# source sent outside the enums) says more than the code, so it is shown instead of it.
SHOWN_INSTEAD = {"Gender": "GenderString", "PartyType": "PartyTypeString"}
EXTRA_SHOWN = {"About": (("ProfileType", "Profile type"),)}
ENGAGEMENT_PREFERENCES = "EngagementPreferences"


@dataclass(frozen=True)
class Shown:
    """One value of the profile page: its label, its text, whether its line breaks count."""

    label: str
    text: str
    lines: bool = False


def profile_view(fields: dict[str, Any]) -> list[tuple[str, list[Shown]]]:
    """The profile page's sections (title, values), without the empty ones: the form's fields
    in its order, each select's code as its label, plus what SHOWN_INSTEAD and EXTRA_SHOWN
    name and the engagement preferences."""
    view: list[tuple[str, list[Shown]]] = []
    for title, section in SECTIONS:
        rows = []
        for f in section:
            text = _text(fields.get(SHOWN_INSTEAD.get(f.name, ""))) or _text(fields.get(f.name))
            if text and f.choices and not _text(fields.get(SHOWN_INSTEAD.get(f.name, ""))):
                text = dict(f.choices).get(text, text)
            if text:
                rows.append(Shown(f.label, text, f.kind == "textarea"))
        for name, label in EXTRA_SHOWN.get(title, ()):
            if text := _text(fields.get(name)):
                rows.append(Shown(label, text))
        if rows:
            view.append((title, rows))
    preferences = _engagement_preferences(fields.get(ENGAGEMENT_PREFERENCES))
    if preferences:
        view.append(("Engagement preferences", preferences))
    return view


def address_lines(address: dict[str, Any]) -> list[str]:
    """An address as its lines, the empty ones left out: street lines, "postal code city",
    county, state, province, country."""
    parts = [
        _text(address.get(p)).strip() for p in ("Address1", "Address2", "Address3", "Address4")
    ]
    parts.append(" ".join(_text(address.get(p)).strip() for p in ("PostalCode", "City")).strip())
    parts += [_text(address.get(p)).strip() for p in ("County", "State", "Province", "Country")]
    return [line for line in parts if line]


def _text(value: Any) -> str:
    return value if isinstance(value, str) else "" if value is None else str(value)


def _engagement_preferences(value: Any) -> list[Shown]:
    """EngagementPreferences ({"Phone": [{"KeyName", "KeyValue", "ProfileId"}], "Email": [...]})
    as one value a channel, a line a preference: "KeyValue (KeyName)"."""
    if not isinstance(value, dict):
        return [Shown("Preferences", _text(value))] if value else []
    rows = []
    for channel, items in value.items():
        lines = []
        for item in items if isinstance(items, list) else [items]:
            if isinstance(item, dict):
                key_value, key_name = _text(item.get("KeyValue")), _text(item.get("KeyName"))
                line = f"{key_value} ({key_name})" if key_value and key_name else key_value
                line = line or ", ".join(f"{k}: {_text(v)}" for k, v in item.items())
                profile_id = _text(item.get("ProfileId"))
                if profile_id:
                    line += f", profile {profile_id}"
            else:
                line = _text(item)
            if line:
                lines.append(line)
        if lines:
            rows.append(Shown(str(channel), "\n".join(lines), lines=True))
    return rows


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
    values[ATTRIBUTES_FIELD] = format_attributes(attributes)
    return {name: _as_sent(value) for name, value in values.items()}


def form_names() -> tuple[str, ...]:
    return (
        *STRING_FORM_FIELDS,
        *(f"Address.{part}" for part, _ in ADDRESS_FORM_PARTS),
        ATTRIBUTES_FIELD,
    )


def form_labels() -> dict[str, str]:
    """Each form field's label, as the error summary names the field, in the form's order."""
    labels = {f.name: f.label for _, fields in SECTIONS for f in fields}
    labels.update({f"Address.{part}": f"Address: {label}" for part, label in ADDRESS_FORM_PARTS})
    labels[ATTRIBUTES_FIELD] = "Attributes"
    return labels


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


# The fields the form shows in a single-line input (not a text area, not a select).
SINGLE_LINE_FIELDS = frozenset(
    {f.name for _, fields in SECTIONS for f in fields if f.kind not in ("textarea", "select")}
    | {f"Address.{part}" for part, _ in ADDRESS_FORM_PARTS}
)


def changed_fields(shown: dict[str, str], values: dict[str, str]) -> set[str]:
    """The form's fields the agent changed from what the form showed."""
    return {
        name for name in form_names() if _changed(name, shown.get(name, ""), values.get(name, ""))
    }


def _changed(name: str, shown: str, value: str) -> bool:
    """Whether `value` sent in field `name` changes `shown`. A single-line input drops the line
    breaks of the value it is given (the browser's value sanitisation), so a first name the API
    stored on two lines ("Ann", "Marie") comes back as "AnnMarie" from an agent who did not
    touch it: that is no change, and the stored value stays as it is, byte for byte."""
    if value == shown:
        return False
    return not (name in SINGLE_LINE_FIELDS and value == _single_line(shown))


def _single_line(value: str) -> str:
    """`value` (as sent: line breaks as LF) as a single-line input holds it, as sent back."""
    return value.replace("\n", "").strip()


def missing_fields(form: FormData) -> list[str]:
    """The fields an edit form lacks, which it must send all of: its own, and the values it
    showed (SHOWN_PREFIX) unless it sends none of those (a script's form, compared with the
    profile as stored). A field left out used to read as empty, and the save cleared it."""
    missing = [name for name in form_names() if name not in form]
    baseline = [SHOWN_PREFIX + name for name in form_names()]
    if any(name in form for name in baseline):
        missing += [name for name in baseline if name not in form]
    return missing


def incomplete_form_message(missing: list[str]) -> str:
    """What the edit page answers (400) to a form without some of its fields."""
    return (
        f"The form was sent without some of its fields ({', '.join(missing)}), so what it "
        "means for them is unknown. Nothing was saved. Open the profile's edit form again and "
        "send it from there; a program sends every field of the form."
    )


# Attributes in the form's text area: one a line, as `name = value`. Any attribute the API
# stored goes through the text area unchanged, with backslash escapes for what the text would
# lose otherwise:
#   \n       a line break (in a name or a value),
#   \=       an "=" in a name (the first "=" not escaped ends the name),
#   \\       a backslash,
#   \uXXXX   any other character, by its code: used for other line-breaking characters and for
#            white space at the start or end of a name or value (the form trims those).
# A backslash followed by anything else is kept as typed (C:\Users stays C:\Users).
ATTRIBUTES_HINT = (
    "One per line, as name = value. Remove a line to remove the attribute. Write a line break "
    'in a value as \\n, a backslash as \\\\ and an "=" in a name as \\=.'
)
_HEX = frozenset("0123456789abcdefABCDEF")


def _breaks_line(ch: str) -> bool:
    return len(f"a{ch}b".splitlines()) > 1


def _escape(text: str, *, name: bool) -> str:
    out = []
    last = len(text) - 1
    for i, ch in enumerate(text):
        if ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "=" and name:
            out.append("\\=")
        elif _breaks_line(ch) or (ch.isspace() and i in (0, last)):
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)


def format_attributes(attributes: dict[str, Any]) -> str:
    """Attributes as the form's text area shows them; parse_attributes reads them back
    exactly."""
    return "\n".join(
        f"{_escape(str(k), name=True)} = {_escape(str(v), name=False)}"
        for k, v in attributes.items()
    )


def _split_line(line: str) -> tuple[str, str, bool]:
    """(name, value, whether the line has an unescaped "="), both still escaped."""
    i = 0
    while i < len(line):
        if line[i] == "\\":
            i += 2
        elif line[i] == "=":
            return line[:i], line[i + 1 :], True
        else:
            i += 1
    return line, "", False


def _unescape(text: str) -> str:
    out = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            code = text[i + 2 : i + 6]
            if nxt in "\\=":
                out.append(nxt)
                i += 2
                continue
            if nxt == "n":
                out.append("\n")
                i += 2
                continue
            if nxt == "u" and len(code) == 4 and set(code) <= _HEX:
                out.append(chr(int(code, 16)))
                i += 6
                continue
        out.append(ch)
        i += 1
    return "".join(out)


def parse_attributes(text: str) -> tuple[dict[str, str], str | None]:
    """The attributes of the form's text area (format_attributes); ({}, what is wrong) when
    a line cannot be read, or a name is written twice (keeping the last would silently drop
    the other value, which the agent may have meant)."""
    attributes: dict[str, str] = {}
    lines: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        raw_name, raw_value, sep = _split_line(line)
        name, value = _unescape(raw_name.strip()), _unescape(raw_value.strip())
        if not sep or not name or not value:
            return {}, f"Line {number}: write each attribute as name = value."
        if len(name) > MAX_LENGTH or len(value) > MAX_LENGTH:
            return {}, f"Line {number}: names and values are at most {MAX_LENGTH} characters."
        if name in attributes:
            return {}, (
                f"Line {number}: the attribute “{_escape(name, name=True)}” is already on line "
                f"{lines[name]}; keep one of the two lines."
            )
        attributes[name] = value
        lines[name] = number
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
        elif value and name in PHONE_FIELDS and not _phone_possible(value, phone_region):
            errors[name] = INCOMPLETE_PHONE
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


# A number of phone characters that is no number its country has: a digit short ("+1 (206)
# 555-01"), one too many, or an unknown country code. Saved, it would be indexed as it is and
# no search for the customer's real number would find the profile.
INCOMPLETE_PHONE = (
    "This number has too few or too many digits for its country: check it and its +country "
    "code, e.g. +1 206 555 0100 or (206) 555-0100."
)


def _phone_possible(value: str, region: str) -> bool:
    """Whether libphonenumber takes `value` for a possible number (its length fits its
    country's numbers), reading a number without a country code as `region`'s, as the
    keys are normalised (normalize.normalize_phone). Only the agent forms ask this: the API
    stores any text, as AWS does."""
    try:
        parsed = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return False
    return bool(phonenumbers.is_possible_number(parsed))


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
    "Someone else changed this field since you opened the form. What is saved now is shown "
    "under it: save again to replace it with your value."
)


@dataclass(frozen=True)
class NowSaved:
    """What is stored now in a field the agent changed and someone else changed meanwhile:
    a field's value (`text`, "" when it was cleared); for the attributes, the conflicting ones
    as the text area writes them (`lines`) and the names of those no longer stored
    (`removed`)."""

    text: str = ""
    lines: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


def _attribute_edit(
    shown: dict[str, str], values: dict[str, str]
) -> tuple[dict[str, str], dict[str, str]]:
    """(the attributes as shown, what the agent changed in them: name -> new value, "" for a
    removed one), line by line, so a line the agent did not touch is neither written back nor
    checked against the stored value (changed meanwhile, it is kept)."""
    before, _ = parse_attributes(shown.get(ATTRIBUTES_FIELD, ""))
    after, _ = parse_attributes(values.get(ATTRIBUTES_FIELD, ""))
    changes = {k: v for k, v in after.items() if before.get(k) != v}
    changes.update({k: "" for k in before if k not in after})
    return before, changes


def _conflicts(
    current: dict[str, Any], shown: dict[str, str], values: dict[str, str]
) -> tuple[set[str], set[str]]:
    """(the form's fields, the attribute names) the agent changed from what was shown whose
    stored value is no longer the one shown. A field both set to the same value is no
    conflict: saving it overwrites nothing."""
    now = values_from_profile(current)
    changed = changed_fields(shown, values)
    fields = {
        name
        for name in changed
        if name != ATTRIBUTES_FIELD
        and now[name] != shown.get(name, "")
        and now[name] != values[name]
    }
    attributes: set[str] = set()
    if ATTRIBUTES_FIELD in changed:
        stored = {str(k): str(v) for k, v in (current.get("Attributes") or {}).items()}
        before, changes = _attribute_edit(shown, values)
        attributes = {
            k
            for k, v in changes.items()
            if stored.get(k, "") != before.get(k, "") and stored.get(k, "") != v
        }
        if attributes:
            fields.add(ATTRIBUTES_FIELD)
    return fields, attributes


def update_changes(
    current: dict[str, Any], shown: dict[str, str], values: dict[str, str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """(UpdateProfile members for what the agent changed from what the form showed — "" clears
    a value, API semantics —, field → CHANGED_MEANWHILE for a changed field whose stored value
    is no longer the one shown)."""
    changed = changed_fields(shown, values)
    conflicting, _ = _conflicts(current, shown, values)
    conflicts = dict.fromkeys(sorted(conflicting), CHANGED_MEANWHILE)
    changes: dict[str, Any] = {name: values[name] for name in STRING_FORM_FIELDS if name in changed}
    address = {
        part: values[f"Address.{part}"]
        for part, _ in ADDRESS_FORM_PARTS
        if f"Address.{part}" in changed
    }
    if address:
        changes["Address"] = address
    if ATTRIBUTES_FIELD in changed:
        _, attribute_changes = _attribute_edit(shown, values)
        if attribute_changes:
            changes["Attributes"] = attribute_changes
    return changes, conflicts


def refused_edit(
    current: dict[str, Any], shown: dict[str, str], values: dict[str, str]
) -> tuple[dict[str, str], dict[str, NowSaved]]:
    """After a save refused for fields changed meanwhile (or not yet tried, the form having
    errors): (the values the form shows as its baseline next, field → what is stored now).

    The agent's typed values stay in the form. The baseline of each conflicting field (of each
    conflicting attribute) becomes the value stored now, so saving again replaces it knowingly,
    and a change a third agent makes after this is refused in turn. The other fields keep the
    baseline they had: a change made meanwhile to a field the agent did not touch stays saved
    (and `refreshed` shows it)."""
    conflicting, attributes = _conflicts(current, shown, values)
    now = values_from_profile(current)
    baseline = {**shown, **{name: now[name] for name in conflicting if name != ATTRIBUTES_FIELD}}
    saved = {name: NowSaved(text=now[name]) for name in conflicting if name != ATTRIBUTES_FIELD}
    if attributes:
        stored = {str(k): str(v) for k, v in (current.get("Attributes") or {}).items()}
        before, _ = _attribute_edit(shown, values)
        rebased = {k: v for k, v in before.items() if k not in attributes}
        rebased.update({k: stored[k] for k in stored if k in attributes})
        baseline[ATTRIBUTES_FIELD] = format_attributes(rebased)
        saved[ATTRIBUTES_FIELD] = NowSaved(
            lines=tuple(
                format_attributes({k: stored[k]}) for k in sorted(attributes) if k in stored
            ),
            removed=tuple(_escape(k, name=True) for k in sorted(attributes) if k not in stored),
        )
    return baseline, saved


def refreshed(
    current: dict[str, Any], shown: dict[str, str], values: dict[str, str]
) -> tuple[dict[str, str], dict[str, str]]:
    """(values, values as shown) of an edit form shown again (refused, or kept when the session
    ended) with each field the agent did not change from what was shown set to what is stored
    now, in the field and as shown; the fields the agent changed are left as they are.

    Left as first shown, an untouched field showed a value no longer stored (saving did not
    write it back, but the agent read it as the customer's), and a change the agent then made
    to it was checked against that stale value. Refreshing it writes nothing either: it stays
    unchanged from what the form shows. The attributes are refreshed line by line once the
    agent changed any (`_refreshed_attributes`)."""
    now = values_from_profile(current)
    untouched = set(form_names()) - changed_fields(shown, values)
    fresh = {name: now[name] for name in untouched}
    if ATTRIBUTES_FIELD not in untouched:
        attributes = _refreshed_attributes(current, shown, values)
        if attributes is not None:
            values = {**values, ATTRIBUTES_FIELD: attributes[0]}
            shown = {**shown, ATTRIBUTES_FIELD: attributes[1]}
    return {**values, **fresh}, {**shown, **fresh}


def _refreshed_attributes(
    current: dict[str, Any], shown: dict[str, str], values: dict[str, str]
) -> tuple[str, str] | None:
    """(the text area, the attributes as shown) of an attributes field the agent changed, with
    each line they did not change as it is stored now — changed, added or removed meanwhile —
    and the lines they changed as they typed them (and as first shown). None when what they
    typed cannot be read: it stays as typed, for them to correct.

    A line left as first shown once showed a value no longer stored; saving did not write it
    back (`_attribute_edit` writes only the lines the agent changed), but the agent read it as
    the customer's."""
    typed, problem = parse_attributes(values.get(ATTRIBUTES_FIELD, ""))
    if problem is not None:
        return None
    before, changes = _attribute_edit(shown, values)
    stored = {str(k): str(v) for k, v in (current.get("Attributes") or {}).items()}
    # The agent's order first, then the lines others added meanwhile.
    names = [*typed, *(k for k in stored if k not in typed and k not in changes)]
    as_typed = {
        k: typed[k] if k in changes else stored[k] for k in names if k in changes or k in stored
    }
    as_shown = {k: v for k, v in as_typed.items() if k not in changes}
    as_shown.update({k: before[k] for k in changes if k in before})
    return format_attributes(as_typed), format_attributes(as_shown)


# The create form refuses an empty form, and the edit form a save that would leave the profile
# with no field at all: a "(no name)" profile that no search finds. The message goes under the
# first field, as the create form's.
EMPTY_FIELD = "FirstName"
EMPTY_PROFILE = "Fill in at least one field (for example the name)."
EMPTIED_PROFILE = (
    "Fill in at least one field (for example the name): a profile with no field at all could "
    "not be found again."
)


def save_edit(
    tx: Tx, *, domain_name: str, profile_id: str, shown: dict[str, str], values: dict[str, str]
) -> tuple[ProfileRecord, dict[str, str]]:
    """Save an edit form in `tx`, a write transaction: (the profile as saved, {}), or (the
    profile as it is, field → CHANGED_MEANWHILE) with nothing written, or (the profile as it
    is, {EMPTY_FIELD: EMPTIED_PROFILE}) when the save would leave it no field at all.

    The check and the write are one step: the profile is read with its row locked (PostgreSQL:
    another writer's save waits for this one's commit; SQLite: the write transaction holds the
    single writer already), so no save commits between the check and the write. Checked in a
    transaction of its own, two agents saving the same field at once both passed the check and
    the last write won."""
    record = profiles.get_locked_profile(tx, domain_name=domain_name, profile_id=profile_id)
    changes, conflicts = update_changes(record.fields, shown, values)
    if conflicts or not changes:
        return record, conflicts
    if not profiles.updated_fields(record.fields, changes):
        # Checked against the profile as it is now, locked: what someone else saved meanwhile
        # in a field the agent did not touch keeps the profile from being empty.
        return record, {EMPTY_FIELD: EMPTIED_PROFILE}
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
