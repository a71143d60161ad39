"""Contact records from a Kinesis (or Kinesis-compatible) stream, as Amazon Connect streams
them: each stream record's data is one contact record (or JSON lines of them).

Every shard is read from the sequence number after its checkpoint (or from the start of the
stream, TRIM_HORIZON, the first time). A polled batch is applied and its checkpoint saved in
the same database transaction, so a restart resumes exactly after the last applied record and
a crash between the two cannot skip or double-apply a batch (re-applying would be idempotent
anyway: contact records are deduplicated by ContactId and LastUpdateTimestamp).

A shard mixes the records of every domain, and its checkpoint is one position: a batch that
waited whole for one domain that cannot take records (its key disabled, its KMS out of reach)
would hold up every other domain's records behind it. So the records of such a domain are held
(kept in the database, sealed under the system key, and counted by `openprofiles instances
unrouted`) and the checkpoint moves on; each poll first sends held records on to the domains
that can take them again, at most every `retry_held_seconds`. Order between versions of one
contact does not depend on the stream's order: the newest LastUpdateTimestamp wins.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from openprofiles.contacts.models import BatchOutcome
from openprofiles.contacts.records import Item, split_body
from openprofiles.contacts.service import held_instances, ingest_contact_items, replay_held
from openprofiles.context import Services, Tx
from openprofiles.errors import ServiceError
from openprofiles.settings import Settings
from openprofiles.store.conflicts import retrying
from openprofiles.store.schema import stream_checkpoint

logger = logging.getLogger(__name__)


@dataclass
class PollResult:
    stream_records: int = 0
    accepted: int = 0
    rejected: int = 0
    # Contact records of this poll's stream records kept because their domain could not take
    # them (counted in `rejected` too), and held records sent on to their domain at this poll
    # (applied, or rejected into its dead-letter store; not counted in `accepted`/`rejected`).
    held: int = 0
    replayed: int = 0
    # Stream records left for the next poll: their batch failed as a whole with a request
    # error (a domain's unusable key holds back only its records); the shard's checkpoint
    # stays, so nothing is lost or skipped.
    deferred: int = 0


# How often held records are tried again: each try asks the key provider about their domains'
# keys (a KMS call when its data key is not cached).
RETRY_HELD_SECONDS = 30.0


def kinesis_client(settings: Settings) -> Any:
    return _kinesis_client(settings.kinesis_endpoint_url, settings.aws_region or settings.region)


@functools.lru_cache(maxsize=8)
def _kinesis_client(endpoint_url: str | None, region: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "kinesis",
        endpoint_url=endpoint_url,
        region_name=region,
        config=Config(retries={"max_attempts": 3}, connect_timeout=5, read_timeout=30),
    )


def load_checkpoints(tx: Tx, stream_name: str) -> dict[str, str]:
    rows = tx.conn.execute(
        select(stream_checkpoint.c.shard_id, stream_checkpoint.c.sequence_number).where(
            stream_checkpoint.c.stream_name == stream_name
        )
    )
    return {r.shard_id: r.sequence_number for r in rows}


def save_checkpoint(tx: Tx, stream_name: str, shard_id: str, sequence_number: str) -> None:
    statement: Any = (
        sqlite_insert(stream_checkpoint)
        if tx.services.database.is_sqlite
        else pg_insert(stream_checkpoint)
    )
    tx.conn.execute(
        statement.on_conflict_do_update(
            index_elements=["stream_name", "shard_id"],
            set_={"sequence_number": statement.excluded.sequence_number, "updated_at": tx.now},
        ),
        {
            "stream_name": stream_name,
            "shard_id": shard_id,
            "sequence_number": sequence_number,
            "updated_at": tx.now,
        },
    )


class KinesisContactRecords:
    """Polls every shard of one stream and applies its contact records."""

    def __init__(
        self,
        services: Services,
        stream_name: str,
        *,
        client: Any = None,
        limit: int = 500,
        retry_held_seconds: float = RETRY_HELD_SECONDS,
    ) -> None:
        self.services = services
        self.stream_name = stream_name
        self.limit = limit
        self.retry_held_seconds = retry_held_seconds
        self._client = client or kinesis_client(services.settings)
        self._next_held_retry = 0.0

    def _shards(self) -> list[str]:
        shards: list[str] = []
        kwargs: dict[str, Any] = {"StreamName": self.stream_name}
        while True:
            page = self._client.list_shards(**kwargs)
            shards.extend(s["ShardId"] for s in page.get("Shards", []))
            token = page.get("NextToken")
            if not token:
                return shards
            kwargs = {"NextToken": token}

    def poll_once(self) -> PollResult:
        """Held records sent on (when due), then one GetRecords per shard; returns what was read
        and applied."""
        result = PollResult()
        self._send_held_on(result)
        with self.services.read() as tx:
            checkpoints = load_checkpoints(tx, self.stream_name)
        for shard_id in self._shards():
            after = checkpoints.get(shard_id)
            if after:
                iterator = self._client.get_shard_iterator(
                    StreamName=self.stream_name,
                    ShardId=shard_id,
                    ShardIteratorType="AFTER_SEQUENCE_NUMBER",
                    StartingSequenceNumber=after,
                )["ShardIterator"]
            else:
                iterator = self._client.get_shard_iterator(
                    StreamName=self.stream_name, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
                )["ShardIterator"]
            records = self._client.get_records(ShardIterator=iterator, Limit=self.limit)["Records"]
            if not records:
                continue
            items: list[Item] = []
            for record in records:
                data = record["Data"]
                text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
                items.extend(split_body(text))

            def apply(
                shard_id: str = shard_id,
                items: list[Item] = items,
                last: str = records[-1]["SequenceNumber"],
            ) -> BatchOutcome:
                with self.services.write() as tx:
                    done = ingest_contact_items(tx, items, hold_unavailable=True)
                    save_checkpoint(tx, self.stream_name, shard_id, last)
                return done

            try:
                # A batch that lost a race with a server's writes (PostgreSQL) runs again.
                outcome = retrying(apply)
            except ServiceError as exc:
                # The other shards go on; this one is read again from its checkpoint next time.
                logger.warning(
                    "Kinesis stream %s, shard %s: %s; its %d records are read again at the next "
                    "poll.",
                    self.stream_name,
                    shard_id,
                    exc.message,
                    len(records),
                )
                result.deferred += len(records)
                continue
            result.stream_records += len(records)
            result.accepted += outcome.accepted
            result.rejected += len(outcome.rejected)
            result.held += outcome.held
        return result

    def _send_held_on(self, result: PollResult) -> None:
        """Send held records on to the domains that can take them now, oldest first, `limit` a
        transaction; nothing (not even a look) before `retry_held_seconds` since the last try."""
        now = time.monotonic()
        if now < self._next_held_retry:
            return
        self._next_held_retry = now + self.retry_held_seconds
        while True:
            with self.services.read() as tx:
                ready = held_instances(tx)
            if not ready:
                return

            def replay(ready: list[str] = ready) -> BatchOutcome:
                with self.services.write() as tx:
                    return replay_held(tx, instance_arns=ready, limit=self.limit)

            try:
                outcome = retrying(replay)
            except ServiceError as exc:
                logger.warning(
                    "Kinesis stream %s: held contact records could not be sent on (%s); they are "
                    "tried again in %s s.",
                    self.stream_name,
                    exc.message,
                    self.retry_held_seconds,
                )
                return
            sent = outcome.accepted + len(outcome.rejected)
            result.replayed += sent - outcome.held
            # Held again (the domain failed meanwhile), or the last of them: done for now.
            if outcome.held or sent < self.limit:
                return

    def run(self, stop: threading.Event, idle_seconds: float = 1.0) -> None:
        """Poll until `stop` is set, waiting `idle_seconds` whenever the stream is drained."""
        while not stop.is_set():
            if self.poll_once().stream_records == 0:
                stop.wait(idle_seconds)
