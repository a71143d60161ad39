"""Standard objects and the templates that write them, through a real boto3 client against a
live server (both backends): ListProfileObjects' ObjectFilter finds `_asset`, `_case` and
`_order` objects by the predefined keys the model documents (ObjectFilter.KeyName), and the
templates of spec §2.2 added later are served, usable as implicit types and as TemplateId."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

NEW_TEMPLATES = [
    "Salesforce-Asset",
    "Salesforce-Multi-Contact-Account-Link",
    "Salesforce-Multi-Asset-Account-Link",
    "Marketo-Multi-Lead-Account-Link",
    "Shopify-DraftOrder",
]
REGISTRATIONS: dict[str, Any] = {
    "Description": "product registrations",
    "AllowProfileCreation": True,
    "Fields": {
        "sn": {"Source": "_source.sn", "Target": "_asset.SerialNumber"},
        "name": {"Source": "_source.name", "Target": "_asset.AssetName"},
        "email": {"Source": "_source.email", "ContentType": "EMAIL_ADDRESS"},
    },
    "Keys": {
        "productSerialNumber": [{"StandardIdentifiers": ["ASSET", "UNIQUE"], "FieldNames": ["sn"]}],
        "_email": [{"StandardIdentifiers": ["PROFILE"], "FieldNames": ["email"]}],
    },
}


@pytest.fixture
def domain(live_server: Any) -> str:
    name = f"s-{uuid.uuid4().hex[:10]}"
    live_server.client().create_domain(DomainName=name, DefaultExpirationDays=30)
    return name


def _profile_id(client: Any, domain: str, key: str, value: str) -> str:
    [item] = client.search_profiles(DomainName=domain, KeyName=key, Values=[value])["Items"]
    return str(item["ProfileId"])


def _objects(
    client: Any, domain: str, type_name: str, pid: str, key: str | None = None, value: str = ""
) -> list[dict[str, Any]]:
    extra = {"ObjectFilter": {"KeyName": key, "Values": [value]}} if key else {}
    page = client.list_profile_objects(
        DomainName=domain, ObjectTypeName=type_name, ProfileId=pid, **extra
    )
    return [json.loads(i["Object"]) for i in page["Items"]]


def test_asset_object_filter_by_documented_keys(live_server: Any, domain: str) -> None:
    client = live_server.client()
    client.put_profile_object_type(DomainName=domain, ObjectTypeName="Reg", **REGISTRATIONS)
    client.put_profile_object(
        DomainName=domain,
        ObjectTypeName="Reg",
        Object=json.dumps({"sn": "SN-1", "name": "Drill", "email": "Bob@X.com"}),
    )
    pid = _profile_id(client, domain, "_email", "bob@x.com")
    asset = {"AssetId": "SN-1", "SerialNumber": "SN-1", "AssetName": "Drill"}
    assert _objects(client, domain, "_asset", pid) == [asset]
    assert _objects(client, domain, "_asset", pid, "_serialNumber", "SN-1") == [asset]
    assert _objects(client, domain, "_asset", pid, "_assetName", "Drill") == [asset]
    assert _objects(client, domain, "_asset", pid, "_assetId", "SN-1") == [asset]
    assert _objects(client, domain, "_asset", pid, "productSerialNumber", "SN-1") == [asset]
    assert _objects(client, domain, "_asset", pid, "_assetName", "Saw") == []


@pytest.mark.parametrize("template_id", NEW_TEMPLATES)
def test_new_template_is_served_and_usable(live_server: Any, domain: str, template_id: str) -> None:
    client = live_server.client()
    template = client.get_profile_object_type_template(TemplateId=template_id)
    assert template["TemplateId"] == template_id
    assert template["SourceName"] in {"Salesforce", "Marketo", "Shopify"}
    put = client.put_profile_object_type(
        DomainName=domain,
        ObjectTypeName=f"My-{template_id}",
        Description="x",
        TemplateId=template_id,
    )
    assert put["TemplateId"] == template_id
    assert put["Keys"] == template["Keys"]
    got = client.get_profile_object_type(DomainName=domain, ObjectTypeName=template_id)
    assert got["TemplateId"] == template_id


def test_shopify_draft_order_through_the_api(live_server: Any, domain: str) -> None:
    client = live_server.client()
    payload = {
        "id": 994118539,
        "name": "#D2",
        "status": "open",
        "email": "bob.norman@mail.example.com",
        "currency": "USD",
        "total_price": "199.00",
        "invoice_url": "https://shop.example/invoices/12c3",
        "line_items": [{"title": "IPod Nano - 8gb", "price": "199.00", "quantity": 1}],
        "customer": {"id": 207119551, "email": "bob.norman@mail.example.com"},
    }
    event = {"detail": {"event": {"detail": {"payload": payload}}}}
    client.put_profile_object(
        DomainName=domain, ObjectTypeName="Shopify-DraftOrder", Object=json.dumps(event)
    )
    pid = _profile_id(client, domain, "_shopifyCustomerId", "207119551")
    [order] = _objects(client, domain, "_order", pid, "_orderId", "994118539")
    assert (order["StatusCode"], order["Status"], order["Name"]) == ("DRAFT", "open", "#D2")
    assert order["OrderItems"] == [{"title": "IPod Nano - 8gb", "price": "199.00", "quantity": "1"}]


TICKETS: dict[str, Any] = {
    "Description": "service tickets and orders",
    "AllowProfileCreation": True,
    "Fields": {
        "ticket": {"Source": "_source.ticket", "Target": "_case.Title"},
        "order": {"Source": "_source.order", "Target": "_order.Name"},
        "email": {"Source": "_source.email", "ContentType": "EMAIL_ADDRESS"},
    },
    "Keys": {
        "_caseId": [{"StandardIdentifiers": ["CASE", "LOOKUP_ONLY"], "FieldNames": ["ticket"]}],
        "_orderId": [{"StandardIdentifiers": ["ORDER", "LOOKUP_ONLY"], "FieldNames": ["order"]}],
        "ticketId": [{"StandardIdentifiers": ["UNIQUE"], "FieldNames": ["ticket"]}],
        "_email": [{"StandardIdentifiers": ["PROFILE"], "FieldNames": ["email"]}],
    },
}


def _found(client: Any, domain: str, key: str, value: str) -> list[tuple[str, Any]]:
    items = client.search_profiles(DomainName=domain, KeyName=key, Values=[value])["Items"]
    return [(i["ProfileId"], i["FoundByItems"]) for i in items]


def test_search_profiles_by_standard_object_keys_finds_the_owner(
    live_server: Any, domain: str
) -> None:
    # Spec §1.11/§4: `_assetId`, `_assetName`, `_serialNumber`, `_caseId` and `_orderId` are
    # predefined search keys; they find the profile that owns the standard object.
    client = live_server.client()
    client.put_profile_object_type(DomainName=domain, ObjectTypeName="Reg", **REGISTRATIONS)
    client.put_profile_object_type(DomainName=domain, ObjectTypeName="Tickets", **TICKETS)
    client.put_profile_object(
        DomainName=domain,
        ObjectTypeName="Reg",
        Object=json.dumps({"sn": "SN-1", "name": "Drill", "email": "bob@x.com"}),
    )
    client.put_profile_object(
        DomainName=domain,
        ObjectTypeName="Tickets",
        Object=json.dumps({"ticket": "T-7", "order": "O-9", "email": "bob@x.com"}),
    )
    client.create_profile(DomainName=domain, FirstName="Someone else")
    pid = _profile_id(client, domain, "_email", "bob@x.com")
    for key, value in [
        ("_assetName", "Drill"),
        ("_serialNumber", "SN-1"),
        ("_assetId", "SN-1"),
        ("_caseId", "T-7"),
        ("_orderId", "O-9"),
    ]:
        assert _found(client, domain, key, value) == [(pid, [{"KeyName": key, "Values": [value]}])]
    assert _found(client, domain, "_assetName", "Saw") == []
    # A standard key combines with the profile's own keys like any other key.
    both = client.search_profiles(
        DomainName=domain,
        KeyName="_assetName",
        Values=["Drill"],
        AdditionalSearchKeys=[{"KeyName": "_email", "Values": ["bob@x.com"]}],
        LogicalOperator="AND",
    )["Items"]
    assert [i["ProfileId"] for i in both] == [pid]
    # Owners of two assets with one name, a page at a time.
    client.put_profile_object(
        DomainName=domain,
        ObjectTypeName="Reg",
        Object=json.dumps({"sn": "SN-2", "name": "Drill", "email": "ann@x.com"}),
    )
    ann = _profile_id(client, domain, "_email", "ann@x.com")
    first = client.search_profiles(
        DomainName=domain, KeyName="_assetName", Values=["Drill"], MaxResults=1
    )
    second = client.search_profiles(
        DomainName=domain,
        KeyName="_assetName",
        Values=["Drill"],
        MaxResults=1,
        NextToken=first["NextToken"],
    )
    assert "NextToken" not in second
    assert sorted(i["ProfileId"] for i in first["Items"] + second["Items"]) == sorted([pid, ann])
    # The asset renamed: its old name no longer finds the owner.
    client.put_profile_object(
        DomainName=domain,
        ObjectTypeName="Reg",
        Object=json.dumps({"sn": "SN-1", "name": "Hammer drill", "email": "bob@x.com"}),
    )
    assert [p for p, _ in _found(client, domain, "_assetName", "Drill")] == [ann]
    assert [p for p, _ in _found(client, domain, "_assetName", "Hammer drill")] == [pid]
