"""The state gauges of openprofiles.metrics, read from the database at each scrape: dead letters
kept, by domain and reason category; those whose send to the domain's SQS queue failed and wait
for a resend; contact records kept for want of a domain, and those of them waiting for the
contact they continue. Grouped counts that open nothing sealed."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric

from openprofiles.contacts.kept import count_unrouted
from openprofiles.context import Services
from openprofiles.dlq.service import count_by_category, count_unsent


class DatabaseState:
    """A prometheus_client collector of the gauges, for a scrape's registry."""

    def __init__(self, services: Services) -> None:
        self._services = services

    def collect(self) -> Iterator[Metric]:
        letters = GaugeMetricFamily(
            "openprofiles_dead_letters",
            "Dead letters kept in domains' dead-letter stores, by domain and reason category.",
            labels=["domain", "category"],
        )
        unsent = GaugeMetricFamily(
            "openprofiles_dead_letters_unsent",
            "Dead letters whose send to their domain's SQS queue failed, waiting for a resend, "
            "by domain.",
            labels=["domain"],
        )
        kept = GaugeMetricFamily(
            "openprofiles_kept_contact_records",
            "Contact records kept for want of a domain that takes them (an unassociated "
            "instance, a domain whose key cannot be used), and those waiting for the contact "
            "they continue (openprofiles instances unrouted lists them).",
            labels=["waiting"],
        )
        with self._services.read() as tx:
            by_category = count_by_category(tx)
            failed = count_unsent(tx)
            waiting = sum(count_unrouted(tx, waiting=True).values())
            other = sum(count_unrouted(tx, waiting=False).values())
        for (domain_name, category), count in sorted(by_category.items()):
            letters.add_metric([domain_name, category], count)
        for domain_name, count in sorted(failed.items()):
            unsent.add_metric([domain_name], count)
        kept.add_metric(["false"], other)
        kept.add_metric(["true"], waiting)
        yield from (letters, unsent, kept)
