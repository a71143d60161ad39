"""Whether a stored record holds a customer's value: for erasing the records no profile links to
(`openprofiles dlq purge --matching`, `openprofiles instances purge-unrouted --matching`).

Dead letters and kept contact records are stored whole, as received, sealed: a record that
failed, or that no domain could take yet, names no profile, so DeleteProfile cannot find it,
and only opening it tells whose it is. A value is compared with every value of the record (a
JSON record: each string or number, however deep) as the rest of the code base compares key
values (openprofiles.normalize, the one normaliser): an email address (a value with "@")
ignoring case, a phone number (digits and the usual separators, `MIN_PHONE_DIGITS` digits at
least) in its E.164 form, numbers without a country code read as the server's
`default_phone_region`'s, and any other value exactly. A record that is not JSON (a line that
could not be parsed) holds the value when its text contains it (an email's ignoring case, a
phone number's as given or in E.164 form). The reason kept beside a record is looked at the
same way: it can quote one of its values.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from openprofiles.normalize import normalize_email, normalize_phone

# What is read as a phone number: digits, perhaps a leading "+", and separators, with at least
# this many digits (fewer is a short code or an id, not a customer's number).
MIN_PHONE_DIGITS = 7
_PHONE_SHAPE = re.compile(r"\+?[0-9 ().\-/]+")


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

    def _equal(self, leaf: str) -> bool:
        if leaf == self.value:
            return True
        if self.kind == "email":
            return "@" in leaf and normalize_email(leaf) == self.normal
        if self.kind == "phone":
            return _phone_shaped(leaf) and normalize_phone(leaf, self.phone_region) == self.normal
        return False

    def _in_text(self, text: str) -> bool:
        if self.kind == "email":
            return self.normal in text.casefold()
        return self.value in text or (self.kind == "phone" and self.normal in text)

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
