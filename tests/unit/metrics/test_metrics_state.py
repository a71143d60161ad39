"""The state gauges of /metrics (openprofiles.metrics.state), read from the database: dead
letters by domain and category, those whose queue send failed, kept contact records."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from tests.unit.ingest.conftest import DOMAIN, make_domain

from openprofiles.context import Services
from openprofiles.dlq import service
from openprofiles.metrics.state import DatabaseState


def _gauges(services: Services) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """What a scrape shows of the collector, parsed back from Prometheus' text format."""
    registry = CollectorRegistry()
    registry.register(DatabaseState(services))
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _letter(services: Services, domain: str, category: str, sink_error: str | None) -> None:
    with services.write() as tx:
        service.put(
            tx,
            domain_name=domain,
            object_type_name="Crm",
            object_json='{"id": "1"}',
            reason="a reason",
            category=category,
            sink_error=sink_error,
        )


@pytest.fixture
def domains(services: Services) -> tuple[str, str]:
    return make_domain(services), make_domain(services, "other")


def test_an_empty_database_shows_no_letters_and_no_kept_records(services: Services) -> None:
    gauges = _gauges(services)
    assert not [key for key in gauges if key[0].startswith("openprofiles_dead_letters")]
    assert gauges[("openprofiles_kept_contact_records", (("waiting", "false"),))] == 0
    assert gauges[("openprofiles_kept_contact_records", (("waiting", "true"),))] == 0


def test_dead_letters_are_counted_by_domain_and_category_and_failed_sends_apart(
    services: Services, domains: tuple[str, str]
) -> None:
    first, other = domains
    _letter(services, first, "no_profile", service.NO_QUEUE)
    _letter(services, first, "no_profile", service.SQS_FAILED)
    _letter(services, first, "invalid_value", None)
    # Failed sends of two categories of a domain add up.
    _letter(services, first, "invalid_value", service.SQS_FAILED)
    _letter(services, other, "missing_key", service.SQS_FAILED)
    _letter(services, other, "missing_key", service.SQS_PENDING)
    gauges = _gauges(services)
    letters = {
        labels: value
        for (name, labels), value in gauges.items()
        if name == "openprofiles_dead_letters"
    }
    assert letters == {
        (("category", "no_profile"), ("domain", DOMAIN)): 2,
        (("category", "invalid_value"), ("domain", DOMAIN)): 2,
        (("category", "missing_key"), ("domain", "other")): 2,
    }
    unsent = {
        labels: value
        for (name, labels), value in gauges.items()
        if name == "openprofiles_dead_letters_unsent"
    }
    # A send under way (pending) is not a failed one.
    assert unsent == {(("domain", DOMAIN),): 2, (("domain", "other"),): 1}
    with services.write() as tx:
        service.purge(tx, domain_name=first)
    assert not [
        key
        for key in _gauges(services)
        if key[0].startswith("openprofiles_dead_letters") and ("domain", DOMAIN) in key[1]
    ]


def test_one_read_serves_the_scrapes_of_its_time(
    services: Services, domains: tuple[str, str]
) -> None:
    """A flood of scrapes reads the tables once per OPENPROFILES_METRICS_STATE_SECONDS."""
    now = [1000.0]
    state = DatabaseState(services, clock=lambda: now[0])
    every = services.settings.metrics_state_seconds
    assert every == 15

    def letters() -> float:
        registry = CollectorRegistry()
        registry.register(state)
        return sum(
            sample.value
            for family in text_string_to_metric_families(generate_latest(registry).decode())
            for sample in family.samples
            if sample.name == "openprofiles_dead_letters"
        )

    _letter(services, DOMAIN, "no_profile", None)
    assert letters() == 1
    _letter(services, DOMAIN, "no_profile", None)
    now[0] += every - 1
    assert letters() == 1, "read within the interval: the earlier read serves"
    now[0] += 1
    assert letters() == 2


def test_a_failed_read_leaves_the_state_out_and_the_counters_in(
    services: Services, domains: tuple[str, str]
) -> None:
    from openprofiles.metrics.endpoint import exposition
    from openprofiles.metrics.events import observe_api_request

    state = DatabaseState(services)
    observe_api_request("ListDomains", 200, None, 0.0)
    with services.write() as tx:
        tx.conn.exec_driver_sql("DROP TABLE contact_awaited")
        tx.conn.exec_driver_sql("DROP TABLE unrouted_contact_record")
    text = exposition(state).decode()
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert samples[("openprofiles_database_state_up", ())] == 0
    assert not [key for key in samples if key[0].startswith("openprofiles_dead_letters")]
    assert (
        samples[
            (
                "openprofiles_api_requests_total",
                (("error", ""), ("operation", "ListDomains"), ("status", "200")),
            )
        ]
        >= 1
    )


def test_a_failed_read_serves_its_time_too(services: Services, domains: tuple[str, str]) -> None:
    """A database that does not answer is asked once per interval, not once more per scrape:
    each waiting scrape holds a thread of the pool the requests share."""
    from sqlalchemy import event

    now = [1000.0]
    state = DatabaseState(services, clock=lambda: now[0])
    every = services.settings.metrics_state_seconds
    with services.write() as tx:
        tx.conn.exec_driver_sql("DROP TABLE contact_awaited")
        tx.conn.exec_driver_sql("DROP TABLE unrouted_contact_record")
    reads: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        if "dlq_message" in statement:
            reads.append(statement)

    event.listen(services.database.engine, "before_cursor_execute", record)
    try:

        def up() -> float:
            registry = CollectorRegistry()
            registry.register(state)
            text = generate_latest(registry).decode()
            return next(
                sample.value
                for family in text_string_to_metric_families(text)
                for sample in family.samples
                if sample.name == "openprofiles_database_state_up"
            )

        assert up() == 0
        tries = len(reads)
        assert tries >= 1
        assert [up() for _ in range(5)] == [0] * 5
        assert len(reads) == tries, "the failure serves its interval"
        now[0] += every
        assert up() == 0
        assert len(reads) > tries
    finally:
        event.remove(services.database.engine, "before_cursor_execute", record)
