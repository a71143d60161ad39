"""The built-in templates: every one is a valid mapping, and the CTR templates pick the phone or
email out of CustomerEndpoint by its Type (spec §2.2-2.3)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from openprofiles.errors import NotFound
from openprofiles.ingest.mapping import map_object
from openprofiles.object_types.models import ObjectType
from openprofiles.object_types.templates import get_template, list_templates
from openprofiles.object_types.validation import validate_definition

EXPECTED = {
    "CTR",
    "CTR-NoInferred",
    "CTR-AutoAssociateOnly",
    "Salesforce-Account",
    "Salesforce-Contact",
    "Salesforce-Case",
    "Zendesk-users",
    "Zendesk-tickets",
    "Servicenow-sys_user",
    "Servicenow-incident",
    "Servicenow-task",
    "Marketo-leads",
    "Segment-Identify",
    "Shopify-Customer",
    "Shopify-Order",
    "Salesforce-Asset",
    "Salesforce-Multi-Contact-Account-Link",
    "Salesforce-Multi-Asset-Account-Link",
    "Marketo-Multi-Lead-Account-Link",
    "Shopify-DraftOrder",
}
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _type(template_id: str) -> ObjectType:
    return ObjectType.from_definition(
        get_template(template_id).definition,
        domain_name="d",
        name=template_id,
        created_at=NOW,
        updated_at=NOW,
    )


def test_all_templates_are_served():
    assert {t.template_id for t in list_templates()} == EXPECTED


@pytest.mark.parametrize("template_id", sorted(EXPECTED))
def test_template_passes_put_validation(template_id):
    validate_definition(get_template(template_id).definition, existing_keys={})


def test_all_templates_together_agree_on_key_content_types():
    # Rule 8 across every template used in one domain.
    seen: dict = {}
    for template in list_templates():
        validate_definition(template.definition, existing_keys=seen)
        object_type = _type(template.template_id)
        for key_name in object_type.keys:
            seen.setdefault(
                key_name, (object_type.key_content_types(key_name), template.template_id)
            )


def test_unknown_template():
    with pytest.raises(NotFound):
        get_template("Nope")


def test_ctr_voice_contact_gives_phone_only():
    mapped = map_object(
        _type("CTR"),
        {
            "ContactId": "c-1",
            "Channel": "VOICE",
            "CustomerEndpoint": {"Type": "TELEPHONE_NUMBER", "Address": "+1 206-345-7890"},
        },
        phone_region="US",
    )
    keys = {k.name: k for k in mapped.keys}
    assert set(keys) == {"_ctrContactId", "_ctrPhone"}
    assert keys["_ctrPhone"].normalised == "+12063457890"
    assert keys["_ctrPhone"].identifiers == frozenset({"PROFILE", "SECONDARY", "NEW_ONLY"})
    assert mapped.unique_key == keys["_ctrContactId"]
    assert mapped.inferred_phone == "+1 206-345-7890"
    assert mapped.inferred_email is None


def test_ctr_email_contact_gives_email_only():
    mapped = map_object(
        _type("CTR-NoInferred"),
        {
            "ContactId": "c-2",
            "CustomerEndpoint": {"Type": "EMAIL_ADDRESS", "Address": "Ada@Example.com"},
        },
        phone_region="US",
    )
    keys = {k.name: k for k in mapped.keys}
    assert set(keys) == {"_ctrContactId", "_email"}
    assert keys["_email"].normalised == "ada@example.com"
    assert mapped.inferred_email == "Ada@Example.com"
    assert mapped.inferred_phone is None


def test_ctr_auto_associate_only_never_creates_profiles():
    assert _type("CTR-AutoAssociateOnly").allow_profile_creation is False
    assert _type("CTR").allow_profile_creation is True


def test_salesforce_account_mapping():
    mapped = map_object(
        _type("Salesforce-Account"),
        {
            "Id": "001",
            "Name": "Acme",
            "IsPersonAccount": False,
            "BillingCity": "Paris",
            "PersonEmail": "x@acme.com",
        },
        phone_region="US",
    )
    assert mapped.targets["_profile"] == {
        "Attributes": {"sfdcAccountId": "001"},
        "BusinessName": "Acme",
        "PartyType": "BUSINESS",
        "BillingAddress": {"City": "Paris"},
        "PersonalEmailAddress": "x@acme.com",
    }
    assert mapped.unique_key is not None and mapped.unique_key.name == "_salesforceAccountId"


def test_shopify_order_mapping():
    payload = {
        "id": 42,
        "customer": {"id": 7},
        "total_price": "10.00",
        "order_status_url": "https://shop/x",
        "shipping_address": {"city": "Lyon", "zip": "69000"},
        "line_items": [{"title": "Socks", "quantity": 2}],
    }
    mapped = map_object(
        _type("Shopify-Order"),
        {"detail": {"event": {"detail": {"payload": payload}}}},
        phone_region="US",
    )
    order = mapped.targets["_order"]
    assert order["StatusCode"] == "ACTIVATED"
    assert order["TotalPrice"] == "10.00"
    assert order["ShippingAddress"] == {"City": "Lyon", "PostalCode": "69000"}
    assert order["OrderItems"] == [{"title": "Socks", "quantity": "2"}]
    assert {k.name: k.value for k in mapped.keys} == {
        "_shopifyOrderId": "42",
        "_shopifyCustomerId": "7",
    }
