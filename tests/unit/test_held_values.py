"""What counts as a record holding a customer's value (openprofiles.held_values), for the
commands that erase a customer's dead letters and kept contact records."""

from __future__ import annotations

import json

import pytest

from openprofiles.held_values import HeldValue


def holds(value: str, record: object, region: str = "US") -> bool:
    text = record if isinstance(record, str) else json.dumps(record)
    return HeldValue(value, region).holds(text)


def test_an_email_ignores_case_and_surrounding_space() -> None:
    assert holds("Ann.Lee@Example.org", {"a": [{"b": " ann.lee@EXAMPLE.ORG "}]})
    assert not holds("ann.lee@example.org", {"a": "ann.lee@example.org.uk"})
    assert not holds("ann.lee@example.org", {"a": "joann.lee@example.org"})


@pytest.mark.parametrize(
    "text",
    [
        "call back ann.lee@example.org.",
        "Ann Lee <Ann.Lee@example.org>",
        "a@x.org;ann.lee@example.org",
        "mailto:ann.lee@example.org",
    ],
)
def test_an_email_among_the_words_of_a_field(text: str) -> None:
    # An operator erasing a customer must not be told a letter is clean while a note in it
    # names them.
    assert holds("ann.lee@example.org", {"note": text})
    assert holds("ann.lee@example.org", text)  # a record that is not JSON


@pytest.mark.parametrize("text", ["call 720-840-1003 back", "tel:+17208401003", "(720) 840-1003."])
def test_a_phone_number_among_the_words_of_a_field(text: str) -> None:
    assert holds("+1 720 840 1003", {"note": text})
    assert not holds("+1 720 840 1004", {"note": text})


def test_a_phone_number_compares_in_e164_form() -> None:
    for written in ("+1 720 840 1003", "(720) 840-1003", "720.840.1003", "17208401003"):
        assert holds("+17208401003", {"Endpoint": {"Address": written}}), written
    assert holds("720-840-1003", {"n": 17208401003})
    assert not holds("+17208401003", {"Address": "+17208401004"})
    # Read in the server's region: a British number without its country code.
    assert holds("+44 20 7946 0958", {"Phone": "020 7946 0958"}, region="GB")
    assert not holds("+44 20 7946 0958", {"Phone": "020 7946 0958"}, region="US")


def test_other_values_are_exact_values_of_a_field() -> None:
    assert holds("CRM-42", {"ids": ["CRM-42"]})
    assert not holds("CRM-42", {"ids": ["crm-42", "CRM-421"]})
    assert not holds("Lee", {"Name": "Ann Lee"})
    # A field's name is not a value.
    assert not holds("Name", {"Name": "Ann"})


def test_text_that_is_not_json_holds_what_it_contains() -> None:
    assert holds("ann.lee@example.org", "id,email\n1,ANN.LEE@example.org\n")
    assert holds("+1 720 840 1003", "{broken +17208401003")
    assert holds("CRM-42", "not json CRM-42")
    assert not holds("CRM-42", "not json CRM-4")


def test_an_empty_value_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        HeldValue("  ", "US")


def test_a_record_nested_too_deeply_to_walk_is_searched_as_text() -> None:
    # Dead-lettered for its depth, a record is kept as sent: looking for a value in it must not
    # crash the command on the recursion limit.
    deep = '{"email": "ann@example.org", "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    assert HeldValue("Ann@Example.org", "US").holds(deep)
    assert not HeldValue("bob@example.org", "US").holds(deep)
