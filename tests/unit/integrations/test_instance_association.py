"""Associating a contact-centre instance (spec §3.2), whatever the way: the object type an
instance integration takes, what associating it again keeps, and the replay of records kept
while it had no domain — on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from openprofiles.contacts.kept import list_unrouted
from openprofiles.contacts.service import connect_instance
from openprofiles.context import Services
from openprofiles.errors import BadRequest
from openprofiles.integrations.models import is_instance_arn
from openprofiles.integrations.service import get_integration, put_integration
from openprofiles.profiles.service import SearchCriterion, search_profiles

from .integ_helpers import INSTANCE, ctr, make_domain, send

D = "assoc"
ROLE = "arn:aws:iam::111122223333:role/profiles"


def test_object_type_names_are_refused_for_an_instance(services: Services) -> None:
    make_domain(services, D)
    with services.write() as tx, pytest.raises(BadRequest) as exc:
        put_integration(
            tx,
            domain_name=D,
            uri=INSTANCE,
            object_type_names={"VOICE": "CTR-AutoAssociateOnly"},
        )
    assert "takes ObjectTypeName" in exc.value.message
    assert "CTR-AutoAssociateOnly" in exc.value.message
    with services.read() as tx, pytest.raises(Exception, match="does not exist"):
        get_integration(tx, domain_name=D, uri=INSTANCE)


def test_a_flow_definition_is_refused_for_an_instance(services: Services) -> None:
    make_domain(services, D)
    flow = {
        "FlowName": "calls",
        "KmsArn": "arn:aws:kms:us-east-1:111122223333:key/k",
        "SourceFlowConfig": {
            "ConnectorType": "S3",
            "SourceConnectorProperties": {"S3": {"BucketName": "b"}},
        },
        "Tasks": [],
        "TriggerConfig": {"TriggerType": "OnDemand"},
    }
    with services.write() as tx, pytest.raises(BadRequest, match="takes no FlowDefinition"):
        put_integration(tx, domain_name=D, uri=INSTANCE, flow_definition=flow)


def test_associating_again_keeps_the_object_type_and_settings(services: Services) -> None:
    make_domain(services, D)
    with services.write() as tx:
        put_integration(
            tx,
            domain_name=D,
            uri=INSTANCE,
            object_type_name="CTR-AutoAssociateOnly",
            settings={"RoleArn": ROLE},
        )
        done, _ = connect_instance(tx, domain_name=D, instance_arn=INSTANCE, move=False)
    assert done.integration.object_type_name == "CTR-AutoAssociateOnly"
    assert done.integration.settings == {"RoleArn": ROLE}
    # Given, the object type changes (and the settings are still kept).
    with services.write() as tx:
        done, _ = connect_instance(
            tx, domain_name=D, instance_arn=INSTANCE, move=False, object_type_name="CTR-NoInferred"
        )
    assert done.integration.object_type_name == "CTR-NoInferred"
    assert done.integration.settings == {"RoleArn": ROLE}


def test_a_new_association_gets_ctr(services: Services) -> None:
    make_domain(services, D)
    make_domain(services, "other")
    with services.write() as tx:
        put_integration(tx, domain_name="other", uri=INSTANCE, object_type_name="CTR-NoInferred")
        done, _ = connect_instance(tx, domain_name=D, instance_arn=INSTANCE, move=True)
    # Moved: the other domain's object type is not this domain's.
    assert done.previous_domain == "other"
    assert done.integration.object_type_name == "CTR"


def test_kept_records_are_replayed_whatever_the_way_of_associating(services: Services) -> None:
    make_domain(services, D)
    assert send(services, ctr("early")).rejected
    with services.write() as tx:
        done, replayed = connect_instance(
            tx,
            domain_name=D,
            instance_arn=INSTANCE,
            move=False,
            object_type_name="CTR",
            settings={},
            tags={"team": "cc"},
        )
    assert done.integration.object_type_name == "CTR"
    assert replayed.accepted == 1 and not replayed.rejected
    with services.read() as tx:
        assert list_unrouted(tx) == []
        found, _ = search_profiles(
            tx, domain_name=D, criteria=[SearchCriterion("_ctrContactId", ("early",))]
        )
    assert len(found) == 1


@pytest.mark.parametrize(
    "uri",
    [
        f"{INSTANCE}\n",  # `$` with re.match let a trailing newline through
        f"{INSTANCE}\u0000",
        f" {INSTANCE}",
        "arn:aws:connect:us-east-1:111122223333:instance/" + "a" * 129,
    ],
)
def test_only_a_whole_instance_arn_is_one(uri: str) -> None:
    assert is_instance_arn(INSTANCE)
    assert not is_instance_arn(uri)
