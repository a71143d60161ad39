"""The one normaliser: what makes two key values the same."""

from __future__ import annotations

import pytest

from openprofiles.normalize import ContentType, normalize, normalize_date


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
