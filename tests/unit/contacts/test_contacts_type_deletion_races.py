"""DeleteProfileObjectType CTR racing contact records of an instance associated with the domain
on PostgreSQL (several server processes). The records read their integration enabled, then
waited for the deletion's lock on the type; once it committed they were stored as objects of
CTR, the implicit type of a template name, which they defined again, while the integration
stayed disabled. Records that wait for the deletion now find their integration disabled, as
if they had come after it: they are refused, nothing of CTR is left."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from tests.support.backends import postgres_schema_url
from tests.support.lock_waits import second_writer_meets_first
from tests.unit.integrations.integ_helpers import INSTANCE, associate, ctr, make_domain, send

from openprofiles.app import build_services
from openprofiles.contacts.service import apply_contact_event
from openprofiles.context import Services
from openprofiles.dlq import service as dlq
from openprofiles.dlq.sinks import dead_letter_in
from openprofiles.errors import BadRequest
from openprofiles.integrations.service import get_integration
from openprofiles.object_types.service import delete_object_type
from openprofiles.settings import Settings
from openprofiles.store.schema import object_type, profile_object

pytestmark = pytest.mark.postgres

D = "ctrrace"
DISABLED = "object type CTR was deleted"


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[Services]:
    with postgres_schema_url() as url:
        services = build_services(Settings(data_dir=tmp_path / "data", database_url=url))
        try:
            make_domain(services, D)
            associate(services, D)
            assert send(services, ctr("before")).accepted == 1
            yield services
        finally:
            services.database.dispose()


def batch(services: Services) -> Any:
    return send(services, ctr("during", address="+12065550111"))


def live_event(services: Services) -> Any:
    event = {k: v for k, v in ctr("live").items() if k != "DisconnectTimestamp"}
    with services.write() as tx:
        return apply_contact_event(tx, event)


def dlq_retry(services: Services) -> Any:
    """`openprofiles dlq retry` of a record dead-lettered before the deletion began."""
    with services.write() as tx:
        return dlq.retry(tx, domain_name=D)


def ctr_rows(services: Services) -> tuple[int, int]:
    """(CTR objects, CTR object_type rows) of the domain."""
    with services.read() as tx:
        count = select(func.count())
        return (
            tx.conn.execute(
                count.select_from(profile_object).where(
                    profile_object.c.domain_name == D, profile_object.c.object_type_name == "CTR"
                )
            ).scalar_one(),
            tx.conn.execute(
                count.select_from(object_type).where(
                    object_type.c.domain_name == D, object_type.c.name == "CTR"
                )
            ).scalar_one(),
        )


@pytest.mark.parametrize(
    "deliver", [batch, live_event, dlq_retry], ids=["batch", "live-event", "dlq-retry"]
)
def test_records_that_waited_for_the_deletion_of_ctr_are_refused(
    pg: Services, deliver: Callable[[Services], Any]
) -> None:
    if deliver is dlq_retry:
        with pg.write() as tx:
            letter = dead_letter_in(
                tx,
                domain_name=D,
                object_type_name="CTR",
                object_json=json.dumps(ctr("lettered", address="+12065550122")),
                reason="Its _ctrContactId was on several profiles (since removed).",
                category="ambiguous",
            )
    outcome = second_writer_meets_first(
        pg,
        lambda tx: delete_object_type(tx, domain_name=D, name="CTR"),
        lambda: deliver(pg),
    )
    if deliver is batch:
        assert outcome.accepted == 0, outcome
        [rejection] = outcome.rejected
        assert DISABLED in rejection.message
    elif deliver is dlq_retry:
        assert outcome.succeeded == [] and outcome.failed == [letter.message_id], outcome
    else:
        assert isinstance(outcome, BadRequest) and DISABLED in outcome.message, outcome
    assert ctr_rows(pg) == (0, 0)
    with pg.read() as tx:
        integration = get_integration(tx, domain_name=D, uri=INSTANCE)
    assert integration.disabled_reason is not None
