"""Integrations and instance association (spec §3.2) on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from openprofiles.context import Services
from openprofiles.domains.service import delete_domain
from openprofiles.errors import BadRequest, NotFound
from openprofiles.integrations.service import (
    delete_integration,
    get_integration,
    instance_domain,
    list_account_integrations,
    list_instances,
    list_integrations,
    put_integration,
)

from .integ_helpers import INSTANCE, associate, make_domain


def test_instance_defaults_to_ctr_and_belongs_to_one_domain(services: Services) -> None:
    make_domain(services, "one")
    make_domain(services, "two")
    with services.write() as tx:
        done = put_integration(tx, domain_name="one", uri=INSTANCE)
    assert done.integration.object_type_name == "CTR"
    assert done.integration.is_instance
    with services.write() as tx, pytest.raises(BadRequest, match="associated with domain one"):
        put_integration(tx, domain_name="two", uri=INSTANCE)
    # Re-putting on the same domain is an update, not a conflict.
    with services.write() as tx:
        put_integration(tx, domain_name="one", uri=INSTANCE, object_type_name="CTR-NoInferred")
        assert get_integration(tx, domain_name="one", uri=INSTANCE).object_type_name == (
            "CTR-NoInferred"
        )


def test_move_removes_old_association(services: Services) -> None:
    make_domain(services, "one")
    make_domain(services, "two")
    associate(services, "one")
    associate(services, "two", move=True)
    with services.read() as tx:
        assert instance_domain(tx, instance_arn=INSTANCE) == "two"
        assert [i.domain_name for i in list_instances(tx)] == ["two"]
        assert list_integrations(tx, domain_name="one", after=None, limit=10)[0] == []


def test_validation(services: Services) -> None:
    make_domain(services, "one")
    with services.write() as tx:
        with pytest.raises(BadRequest, match="not a contact-centre instance ARN"):
            put_integration(tx, domain_name="one", uri="arn:aws:connect:us-east-1:1:queue/x")
        with pytest.raises(BadRequest, match="ObjectTypeName or ObjectTypeNames is required"):
            put_integration(tx, domain_name="one", uri="arn:aws:sqs:us-east-1:1:q")
        with pytest.raises(BadRequest, match="not both"):
            put_integration(
                tx,
                domain_name="one",
                uri="arn:aws:sqs:us-east-1:1:q",
                object_type_name="CTR",
                object_type_names={"ShopifyCreateCustomers": "Shopify-Customer"},
            )
        with pytest.raises(BadRequest, match="object type Nope does not exist"):
            put_integration(
                tx, domain_name="one", uri="arn:aws:sqs:us-east-1:1:q", object_type_name="Nope"
            )
        with pytest.raises(NotFound):
            put_integration(tx, domain_name="missing", uri=INSTANCE)
        with pytest.raises(NotFound):
            get_integration(tx, domain_name="one", uri="arn:aws:sqs:us-east-1:1:q")


def test_list_account_integrations_delete_and_domain_delete(services: Services) -> None:
    make_domain(services, "one")
    make_domain(services, "two")
    uri = "arn:aws:events:us-east-1:111122223333:event-bus/shopify"
    with services.write() as tx:
        for name in ("one", "two"):
            put_integration(
                tx,
                domain_name=name,
                uri=uri,
                object_type_names={"ShopifyCreateCustomers": "Shopify-Customer"},
            )
        items, more = list_account_integrations(tx, uri=uri, after=None, limit=1)
        assert [i.domain_name for i in items] == ["one"] and more
        delete_integration(tx, domain_name="one", uri=uri)
        with pytest.raises(NotFound):
            delete_integration(tx, domain_name="one", uri=uri)
    associate(services, "two")
    with services.write() as tx:
        delete_domain(tx, domain_name="two")
    # The instance is free again once its domain is gone.
    associate(services, "one")
