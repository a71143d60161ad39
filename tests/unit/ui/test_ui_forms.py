"""The profile form's validation and change computation, and the search box's key detection."""

from __future__ import annotations

import pytest
from starlette.datastructures import FormData

from openprofiles.domains.setup import parse_queue_url, queue_policy_statement
from openprofiles.errors import BadRequest
from openprofiles.settings import Settings
from openprofiles.ui import profile_form as pf


@pytest.mark.parametrize(
    ("text", "keys"),
    [
        ("0123456789abcdef0123456789ABCDEF", ["_profileId"]),
        ("Maria@Example.com", ["_email"]),
        ("+1 (206) 555-0100", ["_phone", "_account"]),
        ("206.555.0100", ["_phone", "_account"]),
        ("Maria Garcia", ["_fullName", "_account"]),
        ("ACC-1001", ["_fullName", "_account"]),
    ],
)
def test_search_key_detection(text: str, keys: list[str]) -> None:
    assert pf.search_keys_for(text) == keys


def form(**values: str) -> dict[str, str]:
    base = pf.values_from_profile({})
    base.update(values)
    return base


@pytest.mark.parametrize(
    ("values", "field", "message"),
    [
        ({"FirstName": "x" * 256}, "FirstName", "at most 255"),
        ({"AdditionalInformation": "x" * 1001}, "AdditionalInformation", "at most 1000"),
        ({"EmailAddress": "not-an-email"}, "EmailAddress", "name@example.com"),
        ({"BusinessEmailAddress": "a@b"}, "BusinessEmailAddress", "name@example.com"),
        ({"PhoneNumber": "call me"}, "PhoneNumber", "Enter a phone number"),
        ({"MobilePhoneNumber": "12"}, "MobilePhoneNumber", "Enter a phone number"),
        ({"Gender": "ROBOT"}, "Gender", "Choose one"),
        ({"Address.City": "x" * 256}, "Address.City", "at most 255"),
        ({"Attributes": "no equals sign"}, "Attributes", "name = value"),
    ],
)
def test_validation_messages(values: dict[str, str], field: str, message: str) -> None:
    errors = pf.validate(form(**values), "US")
    assert message in errors[field]


def test_valid_form_and_free_text_birth_date() -> None:
    values = form(
        FirstName="Ana",
        PhoneNumber="(206) 555-0100",
        EmailAddress="ana@example.com",
        BirthDate="spring of '85",
        Attributes="tier = gold\nsegment=smb",
    )
    assert pf.validate(values, "US") == {}
    fields = pf.creation_fields(values)
    assert fields["BirthDate"] == "spring of '85"
    assert fields["Attributes"] == {"tier": "gold", "segment": "smb"}
    assert "LastName" not in fields


def test_update_changes_clear_with_empty_strings() -> None:
    current = {
        "FirstName": "Ana",
        "EmailAddress": "ana@example.com",
        "Address": {"City": "Lyon"},
        "Attributes": {"tier": "gold", "segment": "smb"},
    }
    shown = pf.values_from_profile(current)
    values = {
        **shown,
        "EmailAddress": "",
        "LastName": "Diaz",
        "Address.City": "",
        "Attributes": "tier = gold",
    }
    assert pf.update_changes(current, shown, values) == (
        {
            "EmailAddress": "",
            "LastName": "Diaz",
            "Address": {"City": ""},
            "Attributes": {"segment": ""},
        },
        {},
    )
    assert pf.update_changes(current, shown, shown) == ({}, {})


def test_an_edit_writes_what_the_agent_changed_and_refuses_what_changed_meanwhile() -> None:
    """Found by an audit: a save wrote back every stale value of the form (a concurrent change
    undone), renamed attributes whose name holds "=", re-checked values the API had accepted
    and turned textarea line breaks into CRLF."""
    stored = {
        "FirstName": "Ana",
        "PhoneNumber": "call me",  # accepted by the API, refused by this form
        "AdditionalInformation": "line one\nline two",
        "Attributes": {"utm=source": "mail", "tier": "gold"},
    }
    shown = pf.values_from_profile(stored)
    # Meanwhile, through the API:
    current = {**stored, "LastName": "Changed elsewhere"}
    # The browser sends textarea line breaks as CRLF; the agent changes the first name only.
    sent = {**shown, "FirstName": "Anna"}
    sent["AdditionalInformation"] = shown["AdditionalInformation"].replace("\n", "\r\n")
    form = pf.values_from_form(
        FormData([*sent.items(), *((pf.SHOWN_PREFIX + k, v) for k, v in shown.items())])
    )
    shown_back = pf.values_from_form(
        FormData([(pf.SHOWN_PREFIX + k, v) for k, v in shown.items()]), pf.SHOWN_PREFIX
    )
    assert form is not None and shown_back == shown
    changed = pf.changed_fields(shown, form)
    assert changed == {"FirstName"}
    assert pf.validate(form, "US", only=changed) == {}
    assert pf.update_changes(current, shown, form) == ({"FirstName": "Anna"}, {})
    # A field the agent changed that was changed elsewhere too: refused, not overwritten.
    stale = {**shown, "LastName": "Mine"}
    assert pf.update_changes(current, shown, stale)[1] == {"LastName": pf.CHANGED_MEANWHILE}
    # One attribute line edited: only that attribute is written.
    edited = {**shown, "Attributes": shown["Attributes"].replace("gold", "silver")}
    assert pf.update_changes(current, shown, edited) == ({"Attributes": {"tier": "silver"}}, {})


def test_queue_url_to_arn_and_policy() -> None:
    settings = Settings(account_id="111122223333", region="us-west-2")
    queue = parse_queue_url(settings, "https://sqs.eu-west-1.amazonaws.com/123456789012/dlq")
    assert queue.arn == "arn:aws:sqs:eu-west-1:123456789012:dlq"
    local = parse_queue_url(settings, "http://localhost:4566/000000000000/dlq")
    assert local.arn == "arn:aws:sqs:us-west-2:000000000000:dlq"
    # A FIFO queue would refuse every dead letter (no MessageGroupId): refused up front.
    with pytest.raises(BadRequest, match="use a standard queue"):
        parse_queue_url(settings, "http://localhost:4566/000000000000/dlq.fifo")
    policy = queue_policy_statement(settings, queue, "acme")
    assert '"aws:SourceArn": "arn:aws:profile:us-west-2:111122223333:domains/acme"' in policy
    assert '"aws:SourceAccount": "111122223333"' in policy
    for bad in ("ftp://x/1/q", "https://sqs.us-east-1.amazonaws.com/q", "nonsense"):
        with pytest.raises(BadRequest):
            parse_queue_url(settings, bad)
