"""Whether a stored record holds a customer's value: for erasing the records no profile links to
(`openprofiles dlq purge --matching`, `openprofiles instances purge-unrouted --matching`).

Dead letters and kept contact records are stored whole, as received, sealed: a record that
failed, or that no domain could take yet, names no profile, so DeleteProfile cannot find it,
and only opening it tells whose it is. A value is compared with every value of the record (a
JSON record: each string or number, however deep) as the rest of the code base compares key
values (openprofiles.normalize, the one normaliser): an email address (a value with "@")
ignoring case, a phone number (digits and the usual separators, `MIN_PHONE_DIGITS` digits at
least) in its E.164 form, numbers without a country code read as the server's
`default_phone_region`'s, and any other value exactly. An email address or phone number is also
found among the words of a longer value ("call back ann.lee@example.org", "Ann Lee
<ann.lee@example.org>", "tel:+17208401003"), as a whole address or number ("joann.lee@..." is
not "ann.lee@..."); other values must be a whole field. A record that is not JSON (a line that
could not be parsed) is searched as one such text (other values: when it contains them). The
reason kept beside a record is looked at the same way: it can quote one of its values.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from openprofiles.normalize import normalize_email, normalize_phone

# What is read as a phone number: digits, perhaps a leading "+", and separators, with at least
# this many digits (fewer is a short code or an id, not a customer's number).
MIN_PHONE_DIGITS = 7
_PHONE_SHAPE = re.compile(r"\+?[0-9 ().\-/]+")
# Candidates among a text's words: an email address (what no address holds ends it: space,
# brackets, quotes, separators), and a run of a phone number's characters.
_EMAIL_IN_TEXT = re.compile(r"[^\s<>()\[\]{},;:\"'`]+@[^\s<>()\[\]{},;:\"'`]+")
_PHONE_IN_TEXT = re.compile(r"\+?\(?[0-9][0-9 ().\-/]*[0-9]")


def _phone_shaped(text: str) -> bool:
    stripped = text.strip()
    return (
        _PHONE_SHAPE.fullmatch(stripped) is not None
        and sum(ch.isdigit() for ch in stripped) >= MIN_PHONE_DIGITS
    )


def _leaves(document: Any) -> Iterator[str]:
    """Every string and number of a JSON document, as text."""
    if isinstance(document, dict):
        for inner in document.values():
            yield from _leaves(inner)
    elif isinstance(document, list):
        for inner in document:
            yield from _leaves(inner)
    elif isinstance(document, str):
        yield document
    elif isinstance(document, int | float) and not isinstance(document, bool):
        yield json.dumps(document)


@dataclass(frozen=True)
class HeldValue:
    """A customer's value to look for in records (see the module): `holds(text)`."""

    value: str
    phone_region: str
    kind: str = field(init=False)
    normal: str = field(init=False)

    def __post_init__(self) -> None:
        if not self.value.strip():
            raise ValueError("The value to look for is empty.")
        if "@" in self.value:
            kind, normal = "email", normalize_email(self.value)
        elif _phone_shaped(self.value):
            kind, normal = "phone", normalize_phone(self.value, self.phone_region)
        else:
            kind, normal = "text", self.value
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "normal", normal)

    def _mentions(self, text: str) -> bool:
        """Whether an email address or phone number among the words of `text` is the value."""
        if self.kind == "email":
            return any(
                normalize_email(found.rstrip(".")) == self.normal
                for found in _EMAIL_IN_TEXT.findall(text)
            )
        if self.kind == "phone":
            return any(
                _phone_shaped(found) and normalize_phone(found, self.phone_region) == self.normal
                for found in _PHONE_IN_TEXT.findall(text)
            )
        return False

    def _equal(self, leaf: str) -> bool:
        """Whether a JSON record's value (a field, an element) holds the value."""
        return leaf == self.value or self._mentions(leaf)

    def _in_text(self, text: str) -> bool:
        """Whether a text that is not a JSON record holds the value."""
        return self.value in text if self.kind == "text" else self._mentions(text)

    def holds(self, text: str | None) -> bool:
        """Whether the record (or reason) `text` holds the value."""
        if not text:
            return False
        try:
            document = json.loads(text)
            if isinstance(document, dict | list):
                return any(self._equal(leaf) for leaf in _leaves(document))
        except (ValueError, RecursionError):
            # Not JSON, or nested too deeply to walk (a record dead-lettered for that is kept
            # as sent): its text.
            pass
        # Or a reason or a line that happens to be a JSON scalar ("42", "true"): its text.
        return self._in_text(text)


# Records opened at once by `ids_holding`.
HOLDING_PAGE = 500


def ids_holding(
    value: HeldValue,
    read_page: Callable[[str, int], Sequence[Any]],
    opened: Callable[[Any], Mapping[str, Any]],
) -> list[str]:
    """The message ids of the stored records whose record or reason holds `value`, in id order:
    `read_page(after, limit)` reads the rows (with `message_id`) after an id, `limit` at most,
    ordered by it, and `opened(row)` opens one (its "object" and "reason"): every record is
    opened, a page at a time."""
    found: list[str] = []
    after = ""
    while True:
        rows = read_page(after, HOLDING_PAGE)
        for row in rows:
            payload = opened(row)
            if value.holds(payload.get("object")) or value.holds(payload.get("reason")):
                found.append(row.message_id)
        if len(rows) < HOLDING_PAGE:
            return found
        after = rows[-1].message_id
