"""Standard objects are indexed by their documented standard keys (spec §1.11; the model's
ObjectFilter.KeyName): `_asset` by `_assetId`, `_assetName` and `_serialNumber`, `_case` by
`_caseId`, `_order` by `_orderId`, each taken from the object's own fields, and they carry
their system id (AssetId, CaseId, OrderId), so ListProfileObjects' ObjectFilter finds them by
those keys as well as by the keys of the records that wrote them."""

from __future__ import annotations

import json
from typing import Any

from openprofiles.context import Services
from openprofiles.objects.service import list_profile_objects

from .conftest import DOMAIN, ingest, put_type


def listed(
    services: Services, type_name: str, profile_id: str, key: tuple[str, str] | None = None
) -> list[dict[str, Any]]:
    """The profile's objects of the type, those carrying key (name, value) if given; values
    of these STRING keys are their own normalised form."""
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


def registration_type() -> dict[str, Any]:
    """The audit's product registration (p5_objfilter): the ASSET key is the mapping's own."""
    return {
        "AllowProfileCreation": True,
        "Fields": {
            "sn": {"Source": "_source.sn", "Target": "_asset.SerialNumber"},
            "name": {"Source": "_source.name", "Target": "_asset.AssetName"},
            "email": {"Source": "_source.email", "ContentType": "EMAIL_ADDRESS"},
        },
        "Keys": {
            "productSerialNumber": [
                {"StandardIdentifiers": ["ASSET", "UNIQUE"], "FieldNames": ["sn"]}
            ],
            "_email": [{"StandardIdentifiers": ["PROFILE"], "FieldNames": ["email"]}],
        },
    }


def test_asset_is_found_by_its_standard_keys(services: Services, domain: str) -> None:
    put_type(services, "Reg", registration_type())
    pid = ingest(services, "Reg", {"sn": "SN-1", "name": "Drill", "email": "bob@x.com"}).profile_id
    asset = {"AssetId": "SN-1", "SerialNumber": "SN-1", "AssetName": "Drill"}
    assert listed(services, "_asset", pid) == [asset]
    assert listed(services, "_asset", pid, ("_serialNumber", "SN-1")) == [asset]
    assert listed(services, "_asset", pid, ("_assetName", "Drill")) == [asset]
    assert listed(services, "_asset", pid, ("_assetId", "SN-1")) == [asset]
    assert listed(services, "_asset", pid, ("productSerialNumber", "SN-1")) == [asset]
    assert listed(services, "_asset", pid, ("_serialNumber", "SN-2")) == []


def test_a_changed_standard_field_moves_its_key(services: Services, domain: str) -> None:
    put_type(services, "Reg", registration_type())
    pid = ingest(services, "Reg", {"sn": "SN-1", "name": "Drill", "email": "bob@x.com"}).profile_id
    ingest(services, "Reg", {"sn": "SN-1", "name": "Hammer drill", "email": "bob@x.com"})
    assert listed(services, "_asset", pid, ("_assetName", "Drill")) == []
    [asset] = listed(services, "_asset", pid, ("_assetName", "Hammer drill"))
    # The system id is set once, when the asset is created.
    assert asset["AssetId"] == "SN-1"


def test_system_id_is_kept_and_finds_the_record_from_another_type(
    services: Services, domain: str
) -> None:
    put_type(services, "Reg", registration_type())
    # A status feed that knows the asset only by its system id: `_assetId` is LOOKUP_ONLY
    # (validation rule 10) and the feed's own UNIQUE key is not an ASSET key.
    put_type(
        services,
        "AssetStatus",
        {
            "AllowProfileCreation": True,
            "Fields": {
                "asset": {"Source": "_source.asset"},
                "event": {"Source": "_source.event"},
                "email": {"Source": "_source.email", "ContentType": "EMAIL_ADDRESS"},
                "status": {"Source": "_source.status", "Target": "_asset.Status"},
            },
            "Keys": {
                "_assetId": [
                    {"StandardIdentifiers": ["ASSET", "LOOKUP_ONLY"], "FieldNames": ["asset"]}
                ],
                "statusEvent": [{"StandardIdentifiers": ["UNIQUE"], "FieldNames": ["event"]}],
                "_email": [{"StandardIdentifiers": ["PROFILE"], "FieldNames": ["email"]}],
            },
        },
    )
    pid = ingest(services, "Reg", {"sn": "SN-1", "name": "Drill", "email": "bob@x.com"}).profile_id
    ingest(
        services,
        "AssetStatus",
        {"asset": "SN-1", "event": "e1", "email": "bob@x.com", "status": "Active"},
    )
    assert listed(services, "_asset", pid) == [
        {"AssetId": "SN-1", "SerialNumber": "SN-1", "AssetName": "Drill", "Status": "Active"}
    ]


def test_every_key_of_the_writing_record_finds_the_standard_object(
    services: Services, domain: str
) -> None:
    put_type(services, "Reg", registration_type())
    pid = ingest(services, "Reg", {"sn": "SN-1", "name": "Drill", "email": "Bob@X.com"}).profile_id
    # `_email` is the record's PROFILE key, not an ASSET one: it indexes the asset as it
    # indexes the Reg object (AWS documents `_salesforceAccountId` finding Salesforce assets).
    assert len(listed(services, "_asset", pid, ("_email", "bob@x.com"))) == 1


def test_case_and_order_are_found_by_their_id_keys(services: Services, domain: str) -> None:
    put_type(
        services,
        "Tickets",
        {
            "AllowProfileCreation": True,
            "Fields": {
                "ticket": {"Source": "_source.ticket", "Target": "_case.Attributes.TicketId"},
                "title": {"Source": "_source.title", "Target": "_case.Title"},
                "order": {"Source": "_source.order", "Target": "_order.Name"},
                "email": {"Source": "_source.email", "ContentType": "EMAIL_ADDRESS"},
            },
            "Keys": {
                "ticketId": [{"StandardIdentifiers": ["CASE", "UNIQUE"], "FieldNames": ["ticket"]}],
                "orderRef": [{"StandardIdentifiers": ["ORDER"], "FieldNames": ["order"]}],
                "_email": [{"StandardIdentifiers": ["PROFILE"], "FieldNames": ["email"]}],
            },
        },
    )
    pid = ingest(
        services,
        "Tickets",
        {"ticket": "T-7", "title": "Broken", "order": "#1001", "email": "bob@x.com"},
    ).profile_id
    assert listed(services, "_case", pid, ("_caseId", "T-7")) == [
        {"CaseId": "T-7", "Title": "Broken", "Attributes": {"TicketId": "T-7"}}
    ]
    assert listed(services, "_order", pid, ("_orderId", "#1001")) == [
        {"OrderId": "#1001", "Name": "#1001"}
    ]
    assert listed(services, "_case", pid, ("_caseId", "#1001")) == []
