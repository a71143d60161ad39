"""Migration 0039 on both databases: Kinesis checkpoints keyed by the stream's ARN. The rows
that have one keep it (and are read as before), the rows saved before 0029 (no ARN) wait by name
in stream_checkpoint_by_name, and afterwards streams of one name in two regions keep a
checkpoint each for one shard. The downgrade keys them by name again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import column, insert, inspect, table, text

from openprofiles.app import build_services
from openprofiles.connectors.kinesis import (
    SHARD_END,
    StreamIdentity,
    load_checkpoints,
    save_checkpoint,
)
from openprofiles.settings import Settings
from openprofiles.store.database import Database
from openprofiles.store.migrate import downgrade_to, upgrade_to
from openprofiles.store.types import UtcDateTime

ACCOUNT = "123456789012"
US = StreamIdentity(
    f"arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/ctr", datetime(2026, 11, 1, tzinfo=UTC)
)
EU = StreamIdentity(
    f"arn:aws:kinesis:eu-west-1:{ACCOUNT}:stream/ctr", datetime(2026, 11, 2, tzinfo=UTC)
)
OTHER = StreamIdentity(
    f"arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/other", datetime(2026, 11, 1, tzinfo=UTC)
)
SHARD0, SHARD1 = "shardId-000000000000", "shardId-000000000001"
SAVED = datetime(2026, 11, 29, tzinfo=UTC)
BEFORE_0029 = datetime(2026, 11, 20, tzinfo=UTC)

# stream_checkpoint's columns (from 0029 on; 0039 changed its key).
CHECKPOINT = table(
    "stream_checkpoint",
    column("stream_name"),
    column("shard_id"),
    column("sequence_number"),
    column("updated_at", UtcDateTime),
    column("stream_arn"),
    column("stream_created_at", UtcDateTime),
)


def row(
    name: str, shard: str, sequence: str, identity: StreamIdentity | None, updated: datetime
) -> dict[str, object]:
    return {
        "stream_name": name,
        "shard_id": shard,
        "sequence_number": sequence,
        "updated_at": updated,
        "stream_arn": identity.arn if identity else None,
        "stream_created_at": identity.created_at if identity else None,
    }


def at_0038(settings: Settings) -> Database:
    """A database at 0038 holding checkpoints of two streams, and two saved before 0029."""
    database = Database.from_settings(settings)
    upgrade_to(database, "0038")
    with database.engine.begin() as conn:
        conn.execute(
            insert(CHECKPOINT),
            [
                row("ctr", SHARD0, "5", US, SAVED),
                row("ctr", SHARD1, SHARD_END, US, SAVED),
                row("other", SHARD0, "7", OTHER, SAVED),
                row("old", SHARD0, "9", None, BEFORE_0029),
                row("old", SHARD1, "10", None, BEFORE_0029),
            ],
        )
    return database


def stored(database: Database, query: str) -> list[tuple[object, ...]]:
    with database.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(query))]


def test_0039_keys_checkpoints_by_the_streams_arn(settings: Settings) -> None:
    database = at_0038(settings)
    try:
        upgrade_to(database, "0039")
        keyed = stored(
            database,
            "SELECT stream_arn, shard_id, stream_name, sequence_number FROM stream_checkpoint "
            "ORDER BY 1, 2",
        )
        by_name = stored(
            database,
            "SELECT stream_name, shard_id, sequence_number FROM stream_checkpoint_by_name "
            "ORDER BY 1, 2",
        )
    finally:
        database.dispose()
    assert keyed == [
        (US.arn, SHARD0, "ctr", "5"),
        (US.arn, SHARD1, "ctr", SHARD_END),
        (OTHER.arn, SHARD0, "other", "7"),
    ]
    assert by_name == [("old", SHARD0, "9"), ("old", SHARD1, "10")]

    services = build_services(settings)
    try:
        with services.read() as tx:
            assert load_checkpoints(tx, US) == {SHARD0: "5", SHARD1: SHARD_END}
        # The stream of that name in another region: a checkpoint of its own for shard 0.
        with services.write() as tx:
            assert save_checkpoint(tx, SHARD0, "2", EU)
        with services.read() as tx:
            assert load_checkpoints(tx, US) == {SHARD0: "5", SHARD1: SHARD_END}
            assert load_checkpoints(tx, EU) == {SHARD0: "2"}
    finally:
        services.database.dispose()


def test_0039_downgrade_keys_them_by_name_again(settings: Settings) -> None:
    """Of two streams of one name, each shard keeps the checkpoint saved last; those saved
    before 0029 are back, without an ARN."""
    database = at_0038(settings)
    try:
        upgrade_to(database, "0039")
        with database.engine.begin() as conn:
            conn.execute(
                insert(CHECKPOINT),
                [
                    row("ctr", SHARD0, "3", EU, SAVED + timedelta(hours=1)),
                    row("ctr", SHARD1, "4", EU, SAVED - timedelta(hours=1)),
                ],
            )
        downgrade_to(database, "0038")
        rows = stored(
            database,
            "SELECT stream_name, shard_id, sequence_number, stream_arn FROM stream_checkpoint "
            "ORDER BY 1, 2",
        )
        tables = set(inspect(database.engine).get_table_names())
    finally:
        database.dispose()
    assert rows == [
        ("ctr", SHARD0, "3", EU.arn),
        ("ctr", SHARD1, SHARD_END, US.arn),
        ("old", SHARD0, "9", None),
        ("old", SHARD1, "10", None),
        ("other", SHARD0, "7", OTHER.arn),
    ]
    assert "stream_checkpoint_by_name" not in tables
