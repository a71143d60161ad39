"""The one normaliser: what makes two key values the same."""

from __future__ import annotations

import random
import sys

import phonenumbers
import pytest

from openprofiles.normalize import (
    _NORTH_AMERICAN,
    ContentType,
    _parsed_phone,
    normalize,
    normalize_date,
    normalize_phone,
)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("+15551234567", "(555)-123-4567"),
        ("+1 (206) 345-7890", "2063457890"),
        ("206.345.7890", "+1 206 345 7890"),
        ("+44 20 7946 0958", "+442079460958"),
    ],
)
def test_phone_numbers_ignore_formatting(a, b):
    assert normalize(ContentType.PHONE_NUMBER, a) == normalize(ContentType.PHONE_NUMBER, b)


def test_phone_numbers_without_country_code_use_the_default_region():
    assert normalize(ContentType.PHONE_NUMBER, "020 7946 0958", phone_region="GB") == (
        "+442079460958"
    )
    assert normalize(ContentType.PHONE_NUMBER, "2079460958", phone_region="US") != (
        normalize(ContentType.PHONE_NUMBER, "2079460958", phone_region="GB")
    )


def test_different_phone_numbers_differ():
    assert normalize(ContentType.PHONE_NUMBER, "2063457890") != normalize(
        ContentType.PHONE_NUMBER, "2063457891"
    )


def test_short_numbers_still_ignore_formatting():
    assert normalize(ContentType.PHONE_NUMBER, "12-34") == normalize(
        ContentType.PHONE_NUMBER, "1234"
    )


def test_text_without_digits_is_no_phone_number():
    assert normalize(ContentType.PHONE_NUMBER, "not a number") == ""


def test_email_ignores_case_and_surrounding_space():
    assert normalize(ContentType.EMAIL_ADDRESS, " Ada@Example.COM ") == "ada@example.com"


def test_name_ignores_case_and_repeated_spaces():
    assert normalize(ContentType.NAME, "John   SMITH") == normalize(ContentType.NAME, "john smith")


def test_string_is_exact():
    assert normalize(ContentType.STRING, "Ab ") == "Ab "
    assert normalize(ContentType.STRING, "ab") != normalize(ContentType.STRING, "AB")


@pytest.mark.parametrize(("a", "b"), [("1234", "1234.0"), ("1.234e3", "1234"), ("12.50", "12.5")])
def test_numbers_compare_by_value(a, b):
    assert normalize(ContentType.NUMBER, a) == normalize(ContentType.NUMBER, b)


def test_unknown_content_type_is_refused():
    with pytest.raises(ValueError):
        normalize("COLOUR", "red")


@pytest.mark.parametrize(
    ("value", "region", "normal"),
    [
        ("2001-03-02", "US", "2001-03-02"),
        (" 2001/3/2 ", "GB", "2001-03-02"),
        ("03/02/2001", "US", "2001-03-02"),  # month first in the US
        ("03/02/2001", "GB", "2001-02-03"),  # day first elsewhere
        ("3.2.2001", "DE", "2001-02-03"),
        ("2001-02-30", "US", "2001-02-30"),  # not a date: compared as written
        ("13/13/2001", "US", "13/13/2001"),
        ("1936", "US", "1936"),
        ("  ", "US", ""),
    ],
)
def test_dates_compare_as_calendar_dates(value, region, normal):
    assert normalize_date(value, region) == normal


# ---------------------------------------------------------------------------- the fast path


def _libphonenumber(text: str, region: str) -> str:
    """The reference: what normalize_phone gives through libphonenumber alone."""
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return "not a number"
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


_FORMATS = [
    "{a}{b}{c}",
    "{a} {b} {c}",
    "{a}-{b}-{c}",
    "{a}.{b}.{c}",
    "({a}) {b}-{c}",
    "({a}){b}-{c}",
    "({a}{b}{c}",
    "{a}) {b}-{c}",
    "+1{a}{b}{c}",
    "+1 {a} {b} {c}",
    "+1-{a}-{b}-{c}",
    "+1.{a}.{b}.{c}",
    "+1 ({a}) {b}-{c}",
    "+1({a}){b}{c}",
    "  +1 ({a}) {b}-{c}  ",
]


@pytest.mark.parametrize("region", ["US", "GB", "CA"])
def test_north_american_numbers_read_as_libphonenumber_reads_them(region: str) -> None:
    rng = random.Random(11)
    checked = fast = 0
    for area in range(200, 1000):
        # Exchanges and line numbers of every leading digit, 0 and 1 included.
        for _ in range(3):
            b, c = f"{rng.randrange(1000):03d}", f"{rng.randrange(10000):04d}"
            for shape in _FORMATS:
                text = shape.format(a=area, b=b, c=c)
                expected = _libphonenumber(text.strip(), region)
                assert normalize_phone(text, region) == expected, (text, region)
                checked += 1
                fast += normalize_phone_is_fast(text, region)
    # All of them took the fast path in the US, those with +1 elsewhere: the comparison above
    # is of the fast path's answers.
    with_plus = sum(shape.strip().startswith("+") for shape in _FORMATS)
    assert checked == 800 * 3 * len(_FORMATS)
    assert fast == 800 * 3 * (len(_FORMATS) if region == "US" else with_plus)


def normalize_phone_is_fast(text: str, region: str) -> bool:
    stripped = text.strip()
    return bool(_NORTH_AMERICAN.fullmatch(stripped)) and (stripped[0] == "+" or region == "US")


@pytest.mark.parametrize(
    "text",
    [
        "1 (206) 345-7890",  # a national prefix: libphonenumber's
        "(106) 345-7890",  # no area code starts with 1
        "206 345 7890 x12",  # an extension
        "٢٠٦٣٤٥٧٨٩٠",  # digits of another script
        "+1 206--345-7890",
        "+12 206 345 7890",
    ],
)
def test_other_shapes_go_through_libphonenumber(text: str) -> None:
    assert not normalize_phone_is_fast(text, "US")
    assert normalize_phone(text, "US") == _parsed_phone(text.strip(), "US")


def test_long_numbers_compare_exactly_and_huge_exponents_as_written():
    thirty = "123456789012345678901234567890"
    assert normalize(ContentType.NUMBER, "1e30") == "1" + "0" * 30
    assert normalize(ContentType.NUMBER, thirty + ".0") == thirty
    # Differing only in the 30th digit: the default 28-digit precision would round them equal.
    assert normalize(ContentType.NUMBER, thirty) != normalize(ContentType.NUMBER, thirty[:-1] + "1")
    assert normalize(ContentType.NUMBER, "0." + "0" * 40 + "12") == "0." + "0" * 40 + "12"
    assert normalize(ContentType.NUMBER, " 1e999999 ") == "1e999999"


@pytest.mark.parametrize("number", ["+44 20 7946 0018", "020 7946 0018", "not a number"])
def test_a_number_read_is_not_kept_in_the_process(number: str) -> None:
    # Built at run time, so no constant or interned copy holds it: only this frame does.
    text = "".join(list(number))
    held_before = sys.getrefcount(text)
    normalize_phone(text, "GB")
    normalize_phone(text, "GB")
    assert sys.getrefcount(text) == held_before
