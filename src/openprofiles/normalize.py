"""The one normaliser of key values, shared by search, profile keys and ingestion.

Customer Profiles compares key values after normalising them by the field's ContentType
(spec §1.4): phone numbers ignore formatting, emails and names ignore case, names also ignore
repeated spaces. Two values match exactly when their normal forms are equal, which is what the
blind index (crypto/blind_index.py) stores digests of.
"""

from __future__ import annotations

import datetime
import re
from decimal import Decimal, InvalidOperation, localcontext
from enum import StrEnum

import phonenumbers


class ContentType(StrEnum):
    STRING = "STRING"
    NUMBER = "NUMBER"
    PHONE_NUMBER = "PHONE_NUMBER"
    EMAIL_ADDRESS = "EMAIL_ADDRESS"
    NAME = "NAME"


def normalize(content_type: ContentType | str, value: str, *, phone_region: str = "US") -> str:
    """The comparable form of `value` for a field of `content_type`; "" when nothing is left."""
    # Callers mostly pass the enum member already; the Enum call costs more than the rest.
    kind = content_type if type(content_type) is ContentType else ContentType(content_type)
    if kind is ContentType.PHONE_NUMBER:
        return normalize_phone(value, phone_region)
    if kind is ContentType.EMAIL_ADDRESS:
        return normalize_email(value)
    if kind is ContentType.NAME:
        return normalize_name(value)
    if kind is ContentType.NUMBER:
        return normalize_number(value)
    return value


# A North American number as most are written: ten digits, the first of the area code 2-9,
# with +1 or not, in groups separated by a space, a dot or a dash, the area code perhaps in
# parentheses. libphonenumber reads it as country code 1 and those ten digits (no national
# prefix to strip: that is a leading 1), so its E.164 form is "+1" and the digits; without
# +1, only where numbers without a country code are read as the US's.
_NORTH_AMERICAN = re.compile(r"(?:\+1[ .-]?)?\(?([2-9][0-9]{2})\)?[ .-]?([0-9]{3})[ .-]?([0-9]{4})")


def normalize_phone(value: str, region: str) -> str:
    """E.164 through libphonenumber, reading numbers without a country code as `region`'s.

    `+1 (206) 345-7890` and `2063457890` both become `+12063457890`. Numbers libphonenumber
    cannot parse fall back to their digits, so they still match themselves in any format.
    An extension is dropped, as E.164 has none: libphonenumber parses it apart (`ext. 5`,
    `x5`, `#5`, `;ext=5`), so `+1 206-555-0100 ext. 5` and `206 555 0100 x5` match and find
    +12065550100. AWS documents nothing of extensions; a profile is found by the line the
    customer is reached on, and sources write the extension, or leave it out, as they please.
    The commonest shape (`_NORTH_AMERICAN`) is read without libphonenumber, whose parse costs
    10-25 µs: a third of a full rule pass's digesting (tests/unit/profiles/test_normalize.py
    checks the two agree on every area code in many formats).
    """
    text = value.strip()
    if not text:
        return ""
    found = _NORTH_AMERICAN.fullmatch(text)
    if found is not None and (text[0] == "+" or region == "US"):
        return "+1" + found[1] + found[2] + found[3]
    return _parsed_phone(text, region)


# Not memoised, though libphonenumber's parse is the costliest step of ingesting a record and
# customers' numbers recur: a cache would keep their numbers in the process for its lifetime
# (a core dump or swapped page would hold them in clear). The common North American shape
# above skips the parse instead.
def _parsed_phone(text: str, region: str) -> str:
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        digits = "".join(ch for ch in text if ch.isdigit())
        return ("+" + digits) if text.startswith("+") and digits else digits
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def normalize_email(value: str) -> str:
    return value.strip().casefold()


def normalize_name(value: str) -> str:
    return " ".join(value.split()).casefold()


_YEAR_FIRST = re.compile(r"(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})")
_YEAR_LAST = re.compile(r"(\d{1,2})[-/.](\d{1,2})[-/.](\d{4})")
# Regions whose dates are written month first (03/02/2001 is March 2nd); elsewhere day first.
_MONTH_FIRST_REGIONS = frozenset({"US", "PH", "FM", "MH", "PW", "AS", "GU", "MP", "PR", "VI", "UM"})


def normalize_date(value: str, region: str) -> str:
    """A calendar date (a birth date) as YYYY-MM-DD when it is written with the year first
    (2001-03-02, 2001/03/02) or last in the region's order (03/02/2001: month first in the US,
    day first in most of the world); any other text stripped, as written. Profiles' BirthDate
    is free text, and the same person's date arrives in both forms from different sources."""
    text = value.strip()
    if found := _YEAR_FIRST.fullmatch(text):
        year, month, day = (int(part) for part in found.groups())
    elif found := _YEAR_LAST.fullmatch(text):
        first, second, year = (int(part) for part in found.groups())
        month, day = (first, second) if region.upper() in _MONTH_FIRST_REGIONS else (second, first)
    else:
        return text
    try:
        return datetime.date(year, month, day).isoformat()
    except ValueError:  # 2001-02-30: not a date, so compared as written
        return text


# Beyond this decimal exponent a number is compared as written: spelling out 1e999999 would
# make a megabyte of digits from eight characters.
_MAX_NUMBER_EXPONENT = 64


def normalize_number(value: str) -> str:
    """Numbers compare by value: `1234`, `1234.0` and ` 1.234e3 ` are one number, exactly,
    however many digits they have."""
    text = value.strip()
    try:
        number = Decimal(text)
    except InvalidOperation:
        return text
    if not number.is_finite() or abs(number.adjusted()) > _MAX_NUMBER_EXPONENT:
        return text
    # Enough precision for every digit: the default 28 would round a longer number (two
    # different values would match) or refuse to quantize it (InvalidOperation, a 500).
    with localcontext() as context:
        context.prec = len(number.as_tuple().digits) + _MAX_NUMBER_EXPONENT + 2
        if number == number.to_integral_value():
            return str(number.to_integral_value().quantize(Decimal(1)))
        return format(number.normalize(), "f")
