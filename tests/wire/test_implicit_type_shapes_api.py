"""Implicit (template-named) object types answer GetProfileObjectType and ListProfileObjectTypes
with every member the model's output shapes require (Description among them, which the
template's own operations do not carry), for every template. Through boto3 against a live
server, on both backends."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from botocore.model import ListShape, MapShape, Shape, StructureShape

from openprofiles.object_types.service import note_implicit_type_used
from openprofiles.object_types.templates import list_templates
from openprofiles.wire.model import load_service_model

TEMPLATE_IDS = [t.template_id for t in list_templates()]


@pytest.fixture
def domain(live_server: Any) -> str:
    name = f"d-{uuid.uuid4().hex[:10]}"
    live_server.client().create_domain(DomainName=name, DefaultExpirationDays=30)
    return name


def _missing(shape: Shape, value: Any, path: str) -> list[str]:
    """The paths of required members absent from `value` (a parsed response of `shape`)."""
    out: list[str] = []
    if isinstance(shape, StructureShape):
        for name in shape.required_members:
            if name not in value:
                out.append(f"{path}.{name}")
        for name, member in shape.members.items():
            if name in value:
                out += _missing(member, value[name], f"{path}.{name}")
    elif isinstance(shape, ListShape):
        for i, item in enumerate(value):
            out += _missing(shape.member, item, f"{path}[{i}]")
    elif isinstance(shape, MapShape):
        for key, item in value.items():
            out += _missing(shape.value, item, f"{path}[{key}]")
    return out


def _output(operation: str) -> StructureShape:
    shape = load_service_model().operation_model(operation).output_shape
    assert isinstance(shape, StructureShape)
    return shape


def test_every_template_name_answers_with_the_required_members(
    live_server: Any, domain: str
) -> None:
    client = live_server.client()
    descriptions = {t.template_id: t.description for t in list_templates()}
    with live_server.services.write() as tx:
        for name in TEMPLATE_IDS:
            note_implicit_type_used(tx, domain_name=domain, name=name)
    for name in TEMPLATE_IDS:
        got = client.get_profile_object_type(DomainName=domain, ObjectTypeName=name)
        assert _missing(_output("GetProfileObjectType"), got, name) == []
        assert got["Description"] == descriptions[name] and got["Description"].strip()
    listed = client.list_profile_object_types(DomainName=domain, MaxResults=100)
    assert sorted(i["ObjectTypeName"] for i in listed["Items"]) == sorted(TEMPLATE_IDS)
    assert _missing(_output("ListProfileObjectTypes"), listed, "list") == []
    for item in listed["Items"]:
        assert item["Description"] == descriptions[item["ObjectTypeName"]]


def test_an_implicit_ctr_type_has_a_description_after_put_profile_object(
    live_server: Any, domain: str
) -> None:
    client = live_server.client()
    record = {
        "ContactId": "c-shape-1",
        "CustomerEndpoint": {"Type": "TELEPHONE_NUMBER", "Address": "+12063457891"},
    }
    client.put_profile_object(DomainName=domain, ObjectTypeName="CTR", Object=json.dumps(record))
    got = client.get_profile_object_type(DomainName=domain, ObjectTypeName="CTR")
    assert got["Description"].startswith("Amazon Connect contact records")
    assert _missing(_output("GetProfileObjectType"), got, "CTR") == []
    items = client.list_profile_object_types(DomainName=domain)["Items"]
    assert [(i["ObjectTypeName"], i["Description"]) for i in items] == [("CTR", got["Description"])]


def test_a_type_defined_from_a_template_keeps_its_own_description(
    live_server: Any, domain: str
) -> None:
    client = live_server.client()
    client.put_profile_object_type(
        DomainName=domain, ObjectTypeName="CTR", Description="our calls", TemplateId="CTR"
    )
    assert (
        client.get_profile_object_type(DomainName=domain, ObjectTypeName="CTR")["Description"]
        == "our calls"
    )
