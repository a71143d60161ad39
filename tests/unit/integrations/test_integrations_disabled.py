"""DeleteProfileObjectType disables the integrations that ingest as the deleted type (the model's
DeleteProfileObjectType doc; spec §1.8), on SQLite and PostgreSQL: they are kept and still
answered, but bring nothing in until they are set up again. A contact record through a disabled
instance integration lands in the dead-letter queue saying why, a live contact event is refused,
a flow does not run; defining the type again or putting the integration again enables it."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.unit.flows.test_flows_templates import ZENDESK_USER, flow_definition

from openprofiles.contacts.service import apply_contact_event
from openprofiles.context import Services
from openprofiles.dlq import service as dlq
from openprofiles.errors import BadRequest
from openprofiles.flows.service import run_due_flows, run_flow
from openprofiles.integrations.service import get_integration, list_integrations, put_integration
from openprofiles.object_types.service import delete_object_type, put_object_type
from openprofiles.profiles.service import SearchCriterion, search_profiles
from openprofiles.settings import Settings

from .integ_helpers import INSTANCE, associate, ctr, make_domain, send

D = "disabled"


@pytest.fixture
def settings(settings: Settings, tmp_path: Path) -> Settings:
    """Flows may read folders under the test's temporary directory, files written just now
    included."""
    return dataclasses.replace(
        settings, flow_folder_roots=(tmp_path,), flow_folder_settle_seconds=0
    )


def found(services: Services, key: str, value: str) -> int:
    with services.read() as tx:
        page, _ = search_profiles(tx, domain_name=D, criteria=[SearchCriterion(key, (value,))])
    return len(page)


def delete_type(services: Services, name: str) -> None:
    with services.write() as tx:
        delete_object_type(tx, domain_name=D, name=name)


def test_deleting_ctr_disables_the_instance_integration_until_it_is_put_again(
    services: Services,
) -> None:
    # CTR is an implicit type: it still serves PutProfileObject after the delete, but the
    # instance's records stop flowing in, as the integration was disabled.
    make_domain(services, D)
    associate(services, D)
    assert send(services, ctr("before")).accepted == 1
    delete_type(services, "CTR")

    outcome = send(services, ctr("after"))

    [rejection] = outcome.rejected
    assert rejection.message.endswith(
        "Define CTR again (PutProfileObjectType) or put the integration again (PutIntegration) "
        "to enable it."
    )
    assert found(services, "_ctrContactId", "after") == 0
    with services.read() as tx:
        [letter] = dlq.list_messages(tx, domain_name=D)
        assert letter.reason == rejection.message and letter.object_type_name == "CTR"
        # Still answered, as it was put.
        integration = get_integration(tx, domain_name=D, uri=INSTANCE)
        assert integration.object_type_name == "CTR"
        assert [i.uri for i in list_integrations(tx, domain_name=D, after=None, limit=10)[0]] == [
            INSTANCE
        ]
    assert integration.disabled_reason == rejection.message
    # A live contact is refused with the same reason.
    event = {k: v for k, v in ctr("live").items() if k != "DisconnectTimestamp"}
    with services.write() as tx, pytest.raises(BadRequest, match="object type CTR was deleted"):
        apply_contact_event(tx, event)

    # A retry while the integration is still disabled keeps the letter, saying why, rather than
    # bring the record in (and define CTR again as a used implicit type).
    with services.write() as tx:
        retried = dlq.retry(tx, domain_name=D)
    assert retried.succeeded == [] and retried.failed == [letter.message_id]
    assert found(services, "_ctrContactId", "after") == 0

    associate(services, D)  # the setup again (PutIntegration with the instance ARN)
    assert send(services, ctr("again")).accepted == 1
    with services.write() as tx:
        assert dlq.retry(tx, domain_name=D).succeeded == [letter.message_id]
    assert found(services, "_ctrContactId", "after") == 1
    # The record applied before the delete is gone with the type; delivered again, it is
    # stored again, not taken for a repeat of a version that no longer exists.
    assert found(services, "_ctrContactId", "before") == 0
    assert send(services, ctr("before")).accepted == 1
    assert found(services, "_ctrContactId", "before") == 1


def test_defining_the_deleted_type_again_enables_its_integration(services: Services) -> None:
    make_domain(services, D)
    calls = {"Description": "calls", "TemplateId": "CTR"}
    with services.write() as tx:
        put_object_type(tx, domain_name=D, name="Calls", params=calls)
    associate(services, D, object_type_name="Calls")
    delete_type(services, "Calls")
    [rejection] = send(services, ctr("gone")).rejected
    assert "object type Calls was deleted" in rejection.message
    # PutIntegration refuses a custom type that is not defined: the reason does not offer it.
    assert rejection.message.endswith("Define Calls again (PutProfileObjectType) to enable it.")
    with services.write() as tx:
        put_object_type(tx, domain_name=D, name="Calls", params=calls)
        assert get_integration(tx, domain_name=D, uri=INSTANCE).disabled_reason is None
    assert send(services, ctr("back")).accepted == 1


def test_an_integration_with_object_type_names_is_disabled_too(services: Services) -> None:
    make_domain(services, D)
    uri = "arn:aws:events:us-east-1:111122223333:rule/segment"
    with services.write() as tx:
        put_object_type(tx, domain_name=D, name="Seg", params={"TemplateId": "Segment-Identify"})
        put_integration(tx, domain_name=D, uri=uri, object_type_names={"identify": "Seg"})
    delete_type(services, "Seg")
    with services.read() as tx:
        reason = get_integration(tx, domain_name=D, uri=uri).disabled_reason
    assert reason is not None and "object type Seg was deleted" in reason


def test_a_disabled_flow_does_not_run_and_its_items_wait(
    services: Services, tmp_path: Path
) -> None:
    make_domain(services, D)
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "a.jsonl").write_text(json.dumps(ZENDESK_USER) + "\n")
    definition = flow_definition("crm", "file://", str(folder), trigger={"TriggerType": "Event"})

    def put_flow() -> None:
        with services.write() as tx:
            put_integration(
                tx,
                domain_name=D,
                uri=None,
                object_type_name="Zendesk-users",
                flow_definition=definition,
            )

    put_flow()
    delete_type(services, "Zendesk-users")

    assert run_due_flows(services, now=datetime.now(UTC)) == []
    with pytest.raises(BadRequest, match="object type Zendesk-users was deleted"):
        run_flow(services, domain_name=D, flow_name="crm")
    assert found(services, "_zendeskUserId", str(ZENDESK_USER["id"])) == 0
    with services.read() as tx:
        assert dlq.list_messages(tx, domain_name=D) == []

    put_flow()  # the setup again
    [run] = run_due_flows(services, now=datetime.now(UTC))
    assert (run.status, run.records_ingested) == ("COMPLETED", 1)
    assert found(services, "_zendeskUserId", str(ZENDESK_USER["id"])) == 1
