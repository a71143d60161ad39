"""Profile keys: the predefined keys derived from standard fields, and how a key's values are
normalised (spec §1.11, §4).

`_phone` spans the four phone fields, `_email` the three email fields, `_account` is the account
number, `_fullName` is "FirstName MiddleName LastName", `_profileId` the profile's own id. They
are recomputed whenever the standard profile changes. AddProfileKey may give a profile more
values of them (a second phone number, a maiden name); those rows are the caller's, which the
recomputation leaves alone (profile_key.origin, migration 0017).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from openprofiles.normalize import ContentType

PHONE_FIELDS = ("PhoneNumber", "MobilePhoneNumber", "HomePhoneNumber", "BusinessPhoneNumber")
EMAIL_FIELDS = ("EmailAddress", "PersonalEmailAddress", "BusinessEmailAddress")
NAME_FIELDS = ("FirstName", "MiddleName", "LastName")

PREDEFINED_CONTENT_TYPES: dict[str, ContentType] = {
    "_phone": ContentType.PHONE_NUMBER,
    "_email": ContentType.EMAIL_ADDRESS,
    "_fullName": ContentType.NAME,
    "_account": ContentType.STRING,
    "_profileId": ContentType.STRING,
}

# Keys that are derived from the standard profile: a value the profile's own fields give cannot
# be deleted by hand (it would come back with the next write); other sources' values of them,
# AddProfileKey's among them, can.
DERIVED_KEYS = frozenset(PREDEFINED_CONTENT_TYPES)


def derived_key_values(profile_id: str, fields: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(key name, raw value) pairs the standard profile contributes to the index."""
    yield "_profileId", profile_id
    for name in PHONE_FIELDS:
        if fields.get(name):
            yield "_phone", fields[name]
    for name in EMAIL_FIELDS:
        if fields.get(name):
            yield "_email", fields[name]
    if fields.get("AccountNumber"):
        yield "_account", fields["AccountNumber"]
    full_name = " ".join(fields[n] for n in NAME_FIELDS if fields.get(n))
    if full_name:
        yield "_fullName", full_name
