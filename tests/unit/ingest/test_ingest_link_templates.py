"""The templates added after the first fifteen (spec §2.2), each ingesting a realistic exported
record through its implicit object type: Salesforce-Asset, Salesforce-Multi-Asset-Account-Link,
Salesforce-Multi-Contact-Account-Link, Marketo-Multi-Lead-Account-Link and Shopify-DraftOrder.
The Multi-...-Account-Link templates keep the account id searchable on every profile without
letting it pick the profile, which is what tells them from their siblings."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from openprofiles.context import Services
from openprofiles.ingest.pipeline import IngestRejected
from openprofiles.object_types.templates import get_template
from openprofiles.object_types.validation import validate_definition
from openprofiles.objects.service import list_profile_objects
from openprofiles.profiles.service import (
    SearchCriterion,
    get_profile,
    profile_keys,
    search_profiles,
)

from .conftest import DOMAIN, ingest

ACCOUNT = "0015g00000XYZabAAB"
SALESFORCE_ACCOUNT = {
    "attributes": {"type": "Account", "url": f"/services/data/v58.0/sobjects/Account/{ACCOUNT}"},
    "Id": ACCOUNT,
    "Name": "Edge Communications",
    "AccountNumber": "CD451796",
    "Phone": "(512) 757-6000",
    "IsPersonAccount": False,
    "BillingStreet": "312 Constitution Place",
    "BillingCity": "Austin",
    "BillingState": "TX",
    "BillingPostalCode": "78767",
    "BillingCountry": "USA",
    "Industry": "Electronics",
    "LastModifiedDate": "2023-05-01T10:00:00.000+0000",
}
SALESFORCE_CONTACT = {
    "attributes": {
        "type": "Contact",
        "url": "/services/data/v58.0/sobjects/Contact/0035g00000ABCDeAAH",
    },
    "Id": "0035g00000ABCDeAAH",
    "AccountId": ACCOUNT,
    "FirstName": "Rose",
    "LastName": "Gonzalez",
    "MiddleName": None,
    "Phone": "(512) 757-6000",
    "MobilePhone": "(512) 757-9340",
    "HomePhone": None,
    "Email": "rose@edge.com",
    "Birthdate": "1970-03-21",
    "MailingStreet": "313 Constitution Place",
    "MailingCity": "Austin",
    "MailingState": "TX",
    "MailingPostalCode": "78767",
    "MailingCountry": "USA",
    "LastModifiedDate": "2023-05-01T10:00:00.000+0000",
}
# A second person at the same account.
SALESFORCE_CONTACT_2 = {
    **SALESFORCE_CONTACT,
    "attributes": {
        "type": "Contact",
        "url": "/services/data/v58.0/sobjects/Contact/0035g00000ABCDfAAH",
    },
    "Id": "0035g00000ABCDfAAH",
    "FirstName": "Sean",
    "LastName": "Forbes",
    "Email": "sean@edge.com",
    "MobilePhone": "(512) 757-1111",
}
SALESFORCE_ASSET = {
    "attributes": {
        "type": "Asset",
        "url": "/services/data/v58.0/sobjects/Asset/02i5g00000Dk3TzAAJ",
    },
    "Id": "02i5g00000Dk3TzAAJ",
    "ContactId": "0035g00000ABCDeAAH",
    "AccountId": ACCOUNT,
    "ParentId": None,
    "RootAssetId": "02i5g00000Dk3TzAAJ",
    "Product2Id": "01t5g000003XyZqAAK",
    "ProductCode": "GC1060",
    "IsCompetitorProduct": False,
    "Name": "GenWatt Diesel 1000kW",
    "SerialNumber": "GC1060-2209-0042",
    "InstallDate": "2022-09-14",
    "PurchaseDate": "2022-09-01",
    "UsageEndDate": "2025-09-01",
    "Status": "Installed",
    "Price": 4500.0,
    "Quantity": 1.0,
    "Description": "Standby generator, east wing",
    "StockKeepingUnit": "GC1060-DSL",
    "CreatedDate": "2022-09-01T15:04:11.000+0000",
    "LastModifiedDate": "2023-01-10T09:12:40.000+0000",
    "IsDeleted": False,
}
MARKETO_LEAD = {
    "id": 318581,
    "firstName": "Jane",
    "lastName": "Doe",
    "email": "jane.doe@example.com",
    "phone": "415-555-0100",
    "mobilePhone": None,
    "company": "Edge Communications",
    "sfdcAccountId": ACCOUNT,
    "sfdcContactId": "0035g00000ABCDeAAH",
    "city": "San Mateo",
    "state": "CA",
    "country": "USA",
    "postalCode": "94404",
    "address": "901 Mariners Island Blvd",
    "createdAt": "2023-01-10T22:45:02Z",
    "updatedAt": "2023-01-11T08:00:00Z",
}
SHOPIFY_CUSTOMER = {
    "version": "0",
    "id": "b3b8c6d2-0000-4000-8000-000000000001",
    "detail-type": "shopifyWebhook",
    "source": "aws.partner/shopify.com/123/customers",
    "detail": {
        "metadata": {"X-Shopify-Topic": "customers/create"},
        "event": {
            "detail": {
                "payload": {
                    "id": 207119551,
                    "email": "bob.norman@mail.example.com",
                    "first_name": "Bob",
                    "last_name": "Norman",
                    "phone": "+16136120707",
                }
            }
        },
    },
}
DRAFT_ORDER = {
    "id": 994118539,
    "note": "Rush order",
    "email": "bob.norman@mail.example.com",
    "taxes_included": False,
    "currency": "USD",
    "invoice_sent_at": None,
    "created_at": "2024-01-02T09:27:21-05:00",
    "updated_at": "2024-01-02T09:27:21-05:00",
    "tax_exempt": False,
    "completed_at": None,
    "name": "#D2",
    "status": "open",
    "line_items": [
        {
            "id": 994118543,
            "variant_id": 39072856,
            "product_id": 632910392,
            "title": "IPod Nano - 8gb",
            "variant_title": "green",
            "sku": "IPOD2008GREEN",
            "vendor": None,
            "quantity": 1,
            "requires_shipping": False,
            "taxable": True,
            "tax_lines": [],
            "applied_discount": None,
            "price": "199.00",
        }
    ],
    "shipping_address": {
        "first_name": "Bob",
        "last_name": "Norman",
        "address1": "Chestnut Street 92",
        "address2": "",
        "city": "Louisville",
        "province": "Kentucky",
        "country": "United States",
        "zip": "40202",
        "name": "Bob Norman",
    },
    "billing_address": {
        "address1": "Chestnut Street 92",
        "city": "Louisville",
        "province": "Kentucky",
        "country": "United States",
        "zip": "40202",
        "name": "Bob Norman",
    },
    "invoice_url": "https://jsmith.myshopify.com/548380009/invoices/12c3bc2ad8dd4d6f3d3bb97cc2",
    "order_id": None,
    "shipping_line": None,
    "tax_lines": [],
    "tags": "",
    "total_price": "199.00",
    "subtotal_price": "199.00",
    "total_tax": "0.00",
    "admin_graphql_api_id": "gid://shopify/DraftOrder/994118539",
    "customer": {"id": 207119551, "email": "bob.norman@mail.example.com", "first_name": "Bob"},
}


def shopify_event(topic: str, payload: dict[str, Any]) -> dict[str, Any]:
    """A Shopify webhook as the EventBridge partner source delivers it."""
    return {
        "version": "0",
        "id": "c1d2e3f4-0000-4000-8000-000000000002",
        "detail-type": "shopifyWebhook",
        "source": "aws.partner/shopify.com/123/draft_orders",
        "detail": {
            "metadata": {"X-Shopify-Topic": topic},
            "event": {"detail": {"payload": payload}},
        },
    }


def objects(
    services: Services, type_name: str, profile_id: str, key: tuple[str, str] | None = None
) -> list[dict[str, Any]]:
    with services.read() as tx:
        key_filter = None
        if key is not None:
            key_filter = (key[0], [tx.cipher(DOMAIN).digest(key[0], key[1])])
        records, _ = list_profile_objects(
            tx,
            domain_name=DOMAIN,
            object_type_name=type_name,
            profile_id=profile_id,
            key_filter=key_filter,
            limit=100,
        )
    return [json.loads(r.object_json) for r in records]


def found_by(services: Services, key: str, value: str) -> list[str]:
    with services.read() as tx:
        page, _ = search_profiles(tx, domain_name=DOMAIN, criteria=[SearchCriterion(key, (value,))])
    return sorted(record.profile_id for record, _ in page)


def keys_of(services: Services, profile_id: str) -> dict[str, list[str]]:
    with services.read() as tx:
        return profile_keys(tx, domain_name=DOMAIN, profile_id=profile_id)


NEW_TEMPLATES = [
    "Salesforce-Asset",
    "Salesforce-Multi-Asset-Account-Link",
    "Salesforce-Multi-Contact-Account-Link",
    "Marketo-Multi-Lead-Account-Link",
    "Shopify-DraftOrder",
]


@pytest.mark.parametrize("template_id", NEW_TEMPLATES)
def test_template_is_served_and_valid(template_id: str) -> None:
    template = get_template(template_id)
    validate_definition(template.definition, existing_keys={})
    assert template.definition["AllowProfileCreation"] is True


# ---------------------------------------------------------------------------- Salesforce-Asset


def test_salesforce_asset_lands_on_its_contacts_profile(services: Services, domain: str) -> None:
    contact = ingest(services, "Salesforce-Contact", SALESFORCE_CONTACT).profile_id
    result = ingest(services, "Salesforce-Asset", SALESFORCE_ASSET)
    assert (result.profile_id, result.created_profile) == (contact, False)
    asset = {
        "AssetId": "02i5g00000Dk3TzAAJ",
        "AssetName": "GenWatt Diesel 1000kW",
        "SerialNumber": "GC1060-2209-0042",
        "ProductSKU": "GC1060-DSL",
        "PurchaseDate": "2022-09-01",
        "UsageEndDate": "2025-09-01",
        "Status": "Installed",
        "Price": "4500.0",
        "Quantity": "1.0",
        "Description": "Standby generator, east wing",
        "Attributes": {
            "sfdcAssetId": "02i5g00000Dk3TzAAJ",
            "sfdcContactId": "0035g00000ABCDeAAH",
            "sfdcAccountId": ACCOUNT,
        },
    }
    assert objects(services, "_asset", contact) == [asset]
    # The documented ObjectFilter keys: the template's and the standard asset's.
    for key in [
        ("_salesforceAssetId", "02i5g00000Dk3TzAAJ"),
        ("_salesforceAccountId", ACCOUNT),
        ("_assetId", "02i5g00000Dk3TzAAJ"),
        ("_assetName", "GenWatt Diesel 1000kW"),
        ("_serialNumber", "GC1060-2209-0042"),
    ]:
        assert objects(services, "_asset", contact, key) == [asset], key
    [raw] = objects(services, "Salesforce-Asset", contact)
    assert raw["Id"] == "02i5g00000Dk3TzAAJ"
    # A later export of the same asset updates the one standard asset.
    ingest(services, "Salesforce-Asset", {**SALESFORCE_ASSET, "Status": "Obsolete"})
    [updated] = objects(services, "_asset", contact)
    assert updated["Status"] == "Obsolete"


def test_salesforce_asset_without_contact_goes_to_the_account(
    services: Services, domain: str
) -> None:
    account = ingest(services, "Salesforce-Account", SALESFORCE_ACCOUNT).profile_id
    result = ingest(services, "Salesforce-Asset", {**SALESFORCE_ASSET, "ContactId": None})
    assert (result.profile_id, result.created_profile) == (account, False)
    assert [a["SerialNumber"] for a in objects(services, "_asset", account)] == ["GC1060-2209-0042"]


def test_multi_asset_account_link_does_not_pick_the_profile_by_account(
    services: Services, domain: str
) -> None:
    rose = ingest(services, "Salesforce-Multi-Contact-Account-Link", SALESFORCE_CONTACT)
    sean = ingest(services, "Salesforce-Multi-Contact-Account-Link", SALESFORCE_CONTACT_2)
    asset = {**SALESFORCE_ASSET, "ContactId": SALESFORCE_CONTACT_2["Id"]}
    result = ingest(services, "Salesforce-Multi-Asset-Account-Link", asset)
    assert (result.profile_id, result.created_profile) == (sean.profile_id, False)
    [stored] = objects(services, "_asset", sean.profile_id, ("_salesforceAccountId", ACCOUNT))
    assert stored["AssetId"] == "02i5g00000Dk3TzAAJ"
    assert objects(services, "_asset", rose.profile_id) == []
    # Without a contact nothing identifies the profile: the account id is no profile key.
    with pytest.raises(IngestRejected) as exc:
        ingest(
            services,
            "Salesforce-Multi-Asset-Account-Link",
            {**SALESFORCE_ASSET, "Id": "02i5g00000Dk3U0AAJ", "ContactId": None},
        )
    assert exc.value.category == "missing_key"


# ---------------------------------------------------------------------------- contacts and leads


def test_multi_contact_account_link_keeps_each_contact_apart(
    services: Services, domain: str
) -> None:
    rose = ingest(services, "Salesforce-Multi-Contact-Account-Link", SALESFORCE_CONTACT)
    sean = ingest(services, "Salesforce-Multi-Contact-Account-Link", SALESFORCE_CONTACT_2)
    assert rose.created_profile and sean.created_profile
    assert rose.profile_id != sean.profile_id
    # The account id is stored on both and finds both.
    assert found_by(services, "_salesforceAccountId", ACCOUNT) == sorted(
        [rose.profile_id, sean.profile_id]
    )
    with services.read() as tx:
        fields = get_profile(tx, domain_name=DOMAIN, profile_id=sean.profile_id).fields
    assert fields["FirstName"] == "Sean"
    assert fields["EmailAddress"] == "sean@edge.com"
    assert fields["Attributes"] == {
        "sfdcContactId": SALESFORCE_CONTACT_2["Id"],
        "sfdcAccountId": ACCOUNT,
    }
    assert keys_of(services, sean.profile_id)["_salesforceContactId"] == [
        SALESFORCE_CONTACT_2["Id"]
    ]


def test_salesforce_contact_by_contrast_joins_the_accounts_profile(
    services: Services, domain: str
) -> None:
    # Why the Multi template exists: in Salesforce-Contact the account id is a PROFILE key, so
    # a second contact of the account lands on the first one's profile.
    rose = ingest(services, "Salesforce-Contact", SALESFORCE_CONTACT)
    sean = ingest(services, "Salesforce-Contact", SALESFORCE_CONTACT_2)
    assert sean.profile_id == rose.profile_id


def test_multi_lead_account_link_links_by_contact_never_by_account(
    services: Services, domain: str
) -> None:
    rose = ingest(services, "Salesforce-Multi-Contact-Account-Link", SALESFORCE_CONTACT)
    lead = ingest(services, "Marketo-Multi-Lead-Account-Link", MARKETO_LEAD)
    assert (lead.profile_id, lead.created_profile) == (rose.profile_id, False)
    assert keys_of(services, rose.profile_id)["_marketoLeadId"] == ["318581"]
    # Another lead of the account, not yet a Salesforce contact: a profile of its own, which
    # the account id still finds.
    other = copy.deepcopy(MARKETO_LEAD)
    other.update(id=318582, firstName="Ann", email="ann@edge.com", sfdcContactId=None)
    second = ingest(services, "Marketo-Multi-Lead-Account-Link", other)
    assert second.created_profile
    assert found_by(services, "_salesforceAccountId", ACCOUNT) == sorted(
        [rose.profile_id, second.profile_id]
    )
    with services.read() as tx:
        fields = get_profile(tx, domain_name=DOMAIN, profile_id=second.profile_id).fields
    assert (fields["FirstName"], fields["EmailAddress"]) == ("Ann", "ann@edge.com")
    assert fields["Address"]["City"] == "San Mateo"


# ---------------------------------------------------------------------------- Shopify-DraftOrder


def test_shopify_draft_order_writes_a_draft_order(services: Services, domain: str) -> None:
    customer = ingest(services, "Shopify-Customer", SHOPIFY_CUSTOMER).profile_id
    result = ingest(
        services, "Shopify-DraftOrder", shopify_event("draft_orders/create", DRAFT_ORDER)
    )
    assert (result.profile_id, result.created_profile) == (customer, False)
    [order] = objects(services, "_order", customer)
    assert order["OrderId"] == "994118539"
    assert order["StatusCode"] == "DRAFT"
    assert order["Status"] == "open"
    assert order["Name"] == "#D2"
    assert order["CustomerEmail"] == "bob.norman@mail.example.com"
    assert order["AdditionalInformation"] == "Rush order"
    assert order["StatusUrl"].endswith("/invoices/12c3bc2ad8dd4d6f3d3bb97cc2")
    assert (order["TotalPrice"], order["TotalTax"], order["Currency"]) == ("199.00", "0.00", "USD")
    assert order["Attributes"] == {"ShopifyOrderId": "994118539", "ShopifyCustomerId": "207119551"}
    assert order["ShippingAddress"] == {
        "Address1": "Chestnut Street 92",
        "City": "Louisville",
        "Province": "Kentucky",
        "Country": "United States",
        "PostalCode": "40202",
        "Name": "Bob Norman",
    }
    [item] = order["OrderItems"]
    assert (item["title"], item["price"], item["quantity"]) == ("IPod Nano - 8gb", "199.00", "1")
    assert objects(services, "_order", customer, ("_orderId", "994118539")) == [order]
    assert objects(services, "_order", customer, ("_shopifyOrderId", "994118539")) == [order]
    # Completing the draft updates the same standard order.
    done = {**DRAFT_ORDER, "status": "completed", "order_id": 450789469}
    ingest(services, "Shopify-DraftOrder", shopify_event("draft_orders/update", done))
    [order] = objects(services, "_order", customer)
    assert (order["Status"], order["OrderId"]) == ("completed", "994118539")
