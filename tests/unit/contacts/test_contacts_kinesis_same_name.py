"""Streams of one name in two regions read into one database, against moto's server mode.

A session's note: checkpoints were keyed by (stream_name, shard_id). Two streams named alike in
two regions (one read by name, in the settings' region, the other by its ARN) shared their rows:
each connector's start dropped the other's checkpoints as those of "a stream deleted and created
again", so every restart read its stream from the start again. They are keyed by the stream's
ARN now (migration 0039). Checkpoints saved before 0029 know their stream by name only: the
stream of that name in the settings' region adopts them (the only region a connector read in
then), never one of another region, which would read after another stream's sequence numbers.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from sqlalchemy import column, insert, select, table, text
from tests.unit.integrations.integ_helpers import associate, ctr, make_domain

from openprofiles.app import build_services
from openprofiles.connectors.kinesis import KinesisContactRecords, describe_identity
from openprofiles.context import Services
from openprofiles.profiles.service import SearchCriterion, search_profiles
from openprofiles.settings import Settings
from openprofiles.store.database import Database
from openprofiles.store.migrate import upgrade_to
from openprofiles.store.schema import stream_checkpoint
from openprofiles.store.types import UtcDateTime

# The settings' region (where a stream named by its name is read), and another one.
SETTINGS_REGION = "us-east-1"
OTHER_REGION = "eu-west-1"
SHARD0 = "shardId-000000000000"


@pytest.fixture(autouse=True)
def _aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")


def at_moto(settings: Settings, moto_url: str) -> Settings:
    """The settings with moto's endpoint, in SETTINGS_REGION: the connectors make their clients
    themselves (a stream named by its ARN is read in the ARN's region)."""
    return replace(
        settings,
        kinesis_endpoint_url=moto_url,
        region=SETTINGS_REGION,
        aws_region=SETTINGS_REGION,
    )


@pytest.fixture
def services(settings: Settings, moto_url: str) -> Iterator[Services]:
    built = build_services(at_moto(settings, moto_url))
    try:
        make_domain(built, "twins")
        associate(built, "twins")
        yield built
    finally:
        built.database.dispose()


class Twins:
    """A one-shard stream of one name in each of the two regions."""

    def __init__(self, moto_url: str) -> None:
        self.name = f"ctr-{uuid.uuid4().hex[:12]}"
        self.clients: dict[str, Any] = {}
        self.arns: dict[str, str] = {}
        for region in (SETTINGS_REGION, OTHER_REGION):
            client = boto3.client("kinesis", endpoint_url=moto_url, region_name=region)
            client.create_stream(StreamName=self.name, ShardCount=1)
            summary = client.describe_stream_summary(StreamName=self.name)
            self.clients[region] = client
            self.arns[region] = summary["StreamDescriptionSummary"]["StreamARN"]

    def put(self, region: str, *contact_ids: str) -> None:
        for contact_id in contact_ids:
            self.clients[region].put_record(
                StreamName=self.name, Data=json.dumps(ctr(contact_id)).encode(), PartitionKey="p"
            )

    def connector(self, services: Services, region: str) -> KinesisContactRecords:
        """The stream of the settings' region named by its name (as every connector read before
        ARNs were taken), the other by its ARN."""
        stream = self.name if region == SETTINGS_REGION else self.arns[region]
        return KinesisContactRecords(services, stream)


def found(services: Services, contact_id: str) -> int:
    with services.read() as tx:
        page, _ = search_profiles(
            tx, domain_name="twins", criteria=[SearchCriterion("_ctrContactId", (contact_id,))]
        )
    return len(page)


def saved(services: Services) -> dict[str, str]:
    """The checkpoints, ARN → shard 0's sequence number."""
    with services.read() as tx:
        rows = tx.conn.execute(select(stream_checkpoint)).all()
    assert {r.shard_id for r in rows} <= {SHARD0}
    return {r.stream_arn: r.sequence_number for r in rows}


def kept_by_name(services: Services) -> list[tuple[str, str, str]]:
    """The checkpoints saved before 0029 that no stream adopted yet (in SQL: not in the schema
    of the code before 0039)."""
    with services.read() as tx:
        rows = tx.conn.execute(
            text("SELECT stream_name, shard_id, sequence_number FROM stream_checkpoint_by_name")
        ).all()
    return [tuple(r) for r in rows]


def test_streams_of_one_name_in_two_regions_keep_their_own_checkpoints(
    services: Services, moto_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Before 0039 the second connector's start dropped the first one's checkpoint (logged as a
    stream created again), and the first one, restarted, read its whole stream again."""
    twins = Twins(moto_url)
    twins.put(SETTINGS_REGION, "u0", "u1")
    twins.put(OTHER_REGION, "e0")

    with caplog.at_level(logging.WARNING, logger="openprofiles.connectors.kinesis"):
        first = twins.connector(services, SETTINGS_REGION).poll_once()
        other = twins.connector(services, OTHER_REGION).poll_once()
        twins.put(SETTINGS_REGION, "u2")
        twins.put(OTHER_REGION, "e1", "e2")
        # Both started again: each reads on after its own checkpoint.
        first_again = twins.connector(services, SETTINGS_REGION).poll_once()
        other_again = twins.connector(services, OTHER_REGION).poll_once()

    assert (first.stream_records, other.stream_records) == (2, 1)
    assert (first_again.stream_records, first_again.accepted) == (1, 1)
    assert (other_again.stream_records, other_again.accepted) == (2, 2)
    assert "deleted and created again" not in caplog.text
    assert saved(services) == {twins.arns[SETTINGS_REGION]: "3", twins.arns[OTHER_REGION]: "3"}
    assert all(found(services, c) == 1 for c in ("u0", "u1", "u2", "e0", "e1", "e2"))


# stream_checkpoint as it was from 0029 to 0038 (the columns a checkpoint saved before 0029 has).
BEFORE_0039 = table(
    "stream_checkpoint",
    column("stream_name"),
    column("shard_id"),
    column("sequence_number"),
    column("updated_at", UtcDateTime),
)


def test_a_checkpoint_saved_before_0029_goes_to_the_stream_of_the_settings_region(
    settings: Settings, moto_url: str
) -> None:
    """A checkpoint saved before 0029 (by name, with no ARN: read in the settings' region, as
    every connector read then), the database then upgraded: the stream of that name in another
    region, read first, does not take it (it was given it, and skipped its own records up to
    that sequence number); the settings' region's stream reads on after it."""
    twins = Twins(moto_url)
    twins.put(SETTINGS_REGION, "u0", "u1", "u2")
    twins.put(OTHER_REGION, "e0", "e1", "e2")
    database = Database.from_settings(settings)
    try:
        upgrade_to(database, "0038")
        with database.engine.begin() as conn:
            # u0 and u1 applied before the upgrade (stream records 1 and 2).
            conn.execute(
                insert(BEFORE_0039).values(
                    stream_name=twins.name,
                    shard_id=SHARD0,
                    sequence_number="2",
                    updated_at=datetime.now(UTC),
                )
            )
    finally:
        database.dispose()
    built = build_services(at_moto(settings, moto_url))  # upgrades to head
    try:
        make_domain(built, "twins")
        associate(built, "twins")

        other = twins.connector(built, OTHER_REGION).poll_once()
        assert (other.stream_records, other.accepted) == (3, 3)
        assert (found(built, "e0"), found(built, "e1")) == (1, 1)
        assert kept_by_name(built) == [(twins.name, SHARD0, "2")]

        first = twins.connector(built, SETTINGS_REGION).poll_once()

        assert (first.stream_records, first.accepted) == (1, 1)
        assert (found(built, "u2"), found(built, "u1")) == (1, 0)
        assert saved(built) == {twins.arns[SETTINGS_REGION]: "3", twins.arns[OTHER_REGION]: "3"}
        identity = describe_identity(twins.clients[SETTINGS_REGION], twins.name)
        with built.read() as tx:
            row = tx.conn.execute(
                select(stream_checkpoint).where(stream_checkpoint.c.stream_arn == identity.arn)
            ).one()
        assert kept_by_name(built) == []
        assert (row.stream_name, row.stream_created_at) == (twins.name, identity.created_at)
    finally:
        built.database.dispose()
