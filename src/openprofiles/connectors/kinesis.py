"""Contact records from a Kinesis (or Kinesis-compatible) stream, as Amazon Connect streams
them: each stream record's data is one contact record (or JSON lines of them).

Every shard is read from the sequence number after its checkpoint (or from the start of the
stream, TRIM_HORIZON, the first time), then by following each page's NextShardIterator, kept
between polls (an expired one is made again from the checkpoint). A polled batch is applied and
its checkpoint saved in the same database transaction (on PostgreSQL, a bounded number of
contact records a transaction, each saving the checkpoint at its last stream record:
store.chunks), so a restart resumes exactly after the last applied record and a crash between
the two cannot skip or double-apply a record (re-applying would be idempotent anyway: contact
records are deduplicated by ContactId and LastUpdateTimestamp).

Kinesis answers a read with an error now and then (ProvisionedThroughputExceededException above
5 reads a second per shard, a network error, an iterator that expired): the shard that failed
waits, doubling its wait with each failure in a row up to BACKOFF_MAX_SECONDS, jittered so that
connectors throttled together do not come back together, and the other shards go on. A page may
be empty while its shard still has records further on (MillisBehindLatest > 0: a stretch of the
shard without records); its NextShardIterator is followed, up to MAX_EMPTY_PAGES a poll. `run`
spaces its polls to stay under a shard's 5 reads a second (READ_INTERVAL_SECONDS). The database
failing a poll (out of reach for a moment, locked, read-only, a lost race) does not stop `run`
either: it waits the same way, and every shard is read again from its checkpoint, which never
passed a batch that was not applied. An error that waiting cannot mend (a statement or schema at
fault: a missing table, a syntax error) stops it, saying so (`database_may_recover`).

A reshard closes shards and opens their children (a split: one parent, two children; a merge:
two parents, one child). A record of a contact written before the reshard is in a parent, the
next one after it in a child: a child is read only once each of its parents is read to its end
(Kinesis' NextShardIterator None), or has gone from the stream (expired), as the KCL does.
Reading them side by side would apply them out of order: the newest LastUpdateTimestamp orders
the versions of one contact, but not records it cannot order (none, or the same one), of which
the first applied is kept and the other rejected, nor what several contacts do to one profile
(its fields, last written; which objects a full profile evicts first). A shard read to its end
has the checkpoint SHARD_END (the KCL's sentinel, past every sequence number): it is never read
again, after a restart either, and no connector on the stream moves it back.

The stream is named by its name, read in the region of the client (OPENPROFILES_AWS_REGION,
else OPENPROFILES_REGION), or by its ARN (`arn:PARTITION:kinesis:REGION:ACCOUNT:stream/NAME`),
read in the ARN's region, whatever those settings say: the client is made for that region (with
OPENPROFILES_KINESIS_ENDPOINT_URL, a Kinesis-compatible server, too: the region then only goes in
the requests' signature, where moto and LocalStack read it), and each call that takes one is
given the StreamARN (which is also how a stream of another account, shared by its resource
policy, is read). An ARN that is not a stream's is refused before any call (`stream_arn`).

A checkpoint belongs to one stream. Checkpoints are kept under the stream's ARN as
DescribeStreamSummary gives it, whichever way the stream was named: a connector started by name
and one by ARN of that stream read on from the same ones, and streams of one name in two regions
or accounts read into one database keep their own (kept under the name before migration 0039,
each overwrote the other's). A stream deleted and created again under the same name (the same
ARN) is another stream, whose sequence numbers do not follow on from the old one's: checkpoints
are saved with the stream's creation time too, those of the stream before it are dropped, with
a warning, and its shards are read from the start. Checkpoints saved before migration 0029
know their stream by its name only: the first connector that reads a stream of that name in the
region where a stream named by its name is read (`named_region`) adopts them
(`claim_checkpoints`). A checkpoint only moves forward (sequence numbers compared as the integers
they are), even when two connectors read one stream: a slower one never moves it back, skips
what the other applied, and a record both read has one dead letter (its origin, the stream
record's position, makes the second an attempt on the first). A batch's transaction reads its
shard's checkpoint only once no other connector's batch of that shard is under way (on
PostgreSQL a lock named by the shard, taken first; SQLite's one writer), so what the other
applied is skipped, not applied again.

A stream record's data must be UTF-8 (a byte order mark before it is ignored, as
`POST /contact-records` ignores one). One that is not, or holds nothing but white space, is a
rejected record, kept (unrouted, sealed) as it came: data that is not UTF-8 kept base64-encoded,
byte for byte, never decoded with replacement characters.

A shard mixes the records of every domain, and its checkpoint is one position: a batch that
waited whole for one domain that cannot take records (its key disabled, its KMS out of reach)
would hold up every other domain's records behind it. So the records of such a domain are held
(kept in the database, sealed under the system key, and counted by `openprofiles instances
unrouted`) and the checkpoint moves on; each poll first sends held records on to the domains
that can take them again, at most every `retry_held_seconds`. Order between versions of one
contact does not depend on the stream's order: the newest LastUpdateTimestamp wins.
"""

from __future__ import annotations

import base64
import codecs
import functools
import logging
import random
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Numeric,
    String,
    and_,
    case,
    cast,
    delete,
    false,
    func,
    literal,
    or_,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from sqlalchemy.sql.elements import ColumnElement

from openprofiles.cli_support import caused_by_ctrl_c
from openprofiles.contacts.models import BatchOutcome, ContactRecordInvalid
from openprofiles.contacts.records import Item, split_body
from openprofiles.contacts.service import ingest_contact_items
from openprofiles.contacts.sweep import send_kept_on
from openprofiles.context import Services, Tx
from openprofiles.errors import InternalServer, ServiceError
from openprofiles.settings import Settings
from openprofiles.store.advisory import take_locks
from openprofiles.store.chunks import transaction_chunks
from openprofiles.store.conflicts import is_transient, retrying, sqlite_locked
from openprofiles.store.database import storage_failure
from openprofiles.store.schema import stream_checkpoint, stream_checkpoint_by_name
from openprofiles.store.types import UtcDateTime

logger = logging.getLogger(__name__)


@dataclass
class PollResult:
    stream_records: int = 0
    accepted: int = 0
    rejected: int = 0
    # Contact records of this poll's stream records kept because their domain could not take
    # them (counted in `rejected` too), and kept records sent on to their domain at this poll
    # (applied, or rejected into its dead-letter store; not counted in `accepted`/`rejected`):
    # held ones, and those kept waiting for a contact this poll's batches applied (woken).
    held: int = 0
    replayed: int = 0
    # Stream records left for the next poll: their batch failed as a whole with a request
    # error (a domain's unusable key holds back only its records); the shard's checkpoint
    # stays, so nothing is lost or skipped. The database failing a batch is no request error:
    # the poll raises it (DATABASE_ERRORS).
    deferred: int = 0
    # Kinesis calls that failed at this poll (a throttled shard, the stream out of reach); each
    # is logged, and what failed waits (backs off) before it is tried again.
    failed: int = 0


# How often held records are tried again: each try asks the key provider about their domains'
# keys (a KMS call when its data key is not cached).
RETRY_HELD_SECONDS = 30.0
# The wait after a failed call: BACKOFF_FIRST_SECONDS after the first failure in a row, doubled
# after each further one up to BACKOFF_MAX_SECONDS (Kinesis' own advice for throughput errors
# is to back off exponentially); between half of that and all of it, at random.
BACKOFF_FIRST_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 30.0
# Empty pages followed on one shard in one poll while it is behind (MillisBehindLatest > 0). A
# shard allows 5 GetRecords a second; the next poll goes on from where this one stopped.
MAX_EMPTY_PAGES = 4
# `run` spaces its polls so that each shard gets at most one GetRecords call per this many
# seconds (Kinesis allows 5 a second a shard, for all its readers together): a stream with
# records arriving all the time is read 4 times a second, not as fast as the loop turns.
READ_INTERVAL_SECONDS = 0.25
# How often the stream's identity and its shards are looked up again when nothing else asks
# for it (a shard that ended, a stream that is gone): picks up shards added by a reshard.
REFRESH_SECONDS = 60.0

# The checkpoint of a shard read to its end (the KCL's own sentinel): after every sequence
# number of the shard, so no save moves it back, and the shard is never read again.
SHARD_END = "SHARD_END"

# Kinesis error codes that may mean the stream was deleted, or created again (AWS refuses a
# sequence number of the stream before with InvalidArgumentException): its identity and shards
# are looked up again at the next poll.
_LOOK_AGAIN = frozenset(
    {"ResourceNotFoundException", "ResourceInUseException", "InvalidArgumentException"}
)


@dataclass(frozen=True)
class StreamIdentity:
    """Which stream a name stood for: DescribeStreamSummary's StreamARN and
    StreamCreationTimestamp (a stream created again under its name has the same ARN, and a new
    creation time)."""

    arn: str
    created_at: datetime

    @property
    def name(self) -> str:
        """The stream's name: what follows "stream/" in its ARN."""
        return self.arn.rpartition("/")[2]

    @property
    def region(self) -> str:
        """The stream's region: its ARN's fourth part."""
        return self.arn.split(":")[3] if self.arn.count(":") >= 5 else ""


class StreamInvalid(ValueError):
    """A stream named by what is neither a Kinesis stream's name nor its ARN; the message says
    what is wrong."""


class StreamArnInvalid(StreamInvalid):
    """A stream named by an ARN that is not a Kinesis stream's; the message says what is wrong."""


@dataclass(frozen=True)
class StreamArn:
    """A Kinesis stream's ARN, `arn:PARTITION:kinesis:REGION:ACCOUNT:stream/NAME`, and its parts."""

    arn: str
    partition: str
    region: str
    account: str
    name: str


# Kinesis' own rule for a stream's name (CreateStream): what follows "stream/" in its ARN.
_STREAM_NAME = re.compile(r"[a-zA-Z0-9_.-]{1,128}")
_STREAM_ARN_FORM = "arn:PARTITION:kinesis:REGION:ACCOUNT:stream/NAME"


def stream_arn(stream: str) -> StreamArn | None:
    """The ARN `stream` is, None when it is a stream's name (a name never starts with "arn:":
    it holds no colon). Raises StreamArnInvalid, saying what is wrong, for an ARN that is not a
    Kinesis stream's: another service's, a consumer's, one without a region, or one whose
    region is not of its partition (aws, aws-cn, aws-us-gov, …: botocore's list). Checked here,
    at the start, as botocore would refuse some of them only at the first call, and the
    connector would then wait and try again for ever."""
    if not stream.startswith("arn:"):
        return None
    # The resource may hold colons (a consumer's ARN ends with ":CREATION-TIMESTAMP").
    parts = stream.split(":", 5)
    if len(parts) != 6:
        raise StreamArnInvalid(f"{stream!r} is not an ARN of the form {_STREAM_ARN_FORM}.")
    _, partition, service, region, account, resource = parts
    partitions = _partitions()
    if partition not in partitions:
        raise StreamArnInvalid(
            f"{stream!r} is in the partition {partition!r}, which is none of AWS's "
            f"({', '.join(sorted(partitions))})."
        )
    if service != "kinesis":
        raise StreamArnInvalid(
            f"{stream!r} is an ARN of the service {service!r}, not of a Kinesis stream "
            f"({_STREAM_ARN_FORM})."
        )
    if not region:
        raise StreamArnInvalid(
            f"{stream!r} names no region: a stream's ARN has one ({_STREAM_ARN_FORM})."
        )
    # ASCII: botocore's patterns say `\w` and `\d`, which would take Arabic-Indic digits.
    if not re.fullmatch(partitions[partition], region, re.ASCII):
        raise StreamArnInvalid(
            f"{stream!r} names the region {region!r}, which is not a region of the partition "
            f"{partition!r}."
        )
    if not re.fullmatch(r"[0-9]{12}", account):
        raise StreamArnInvalid(
            f"{stream!r} names the account {account!r}, which is not an AWS account id (12 digits)."
        )
    kind, _, name = resource.partition("/")
    if kind != "stream" or not name:
        raise StreamArnInvalid(
            f"{stream!r} is not a stream's ARN: its resource is {resource!r}, not stream/NAME."
        )
    if "/consumer/" in name:
        raise StreamArnInvalid(
            f"{stream!r} is a stream consumer's ARN: the connector reads a stream "
            f"({_STREAM_ARN_FORM})."
        )
    if not _STREAM_NAME.fullmatch(name):
        raise StreamArnInvalid(
            f"{stream!r} names the stream {name!r}, which is not a stream's name (1 to 128 "
            "letters, digits, '_', '.' or '-')."
        )
    return StreamArn(stream, partition, region, account, name)


def check_stream(stream: str) -> StreamArn | None:
    """The ARN `stream` is (`stream_arn`), None when it is a stream's name. Raises StreamInvalid,
    saying what is wrong, when it is neither: an ARN that is not a stream's, or a name Kinesis
    would refuse (an empty one, a space or a slash in it, more than 128 characters). Checked at
    the start: botocore refuses an empty name only at the first call, with an error taken for a
    failed call, and the connector would wait and try again for ever."""
    arn = stream_arn(stream)
    if arn is None and not _STREAM_NAME.fullmatch(stream):
        raise StreamInvalid(
            f"{stream!r} is neither a stream's name (1 to 128 letters, digits, '_', '.' or '-') "
            f"nor a stream's ARN ({_STREAM_ARN_FORM})."
        )
    return arn


@functools.cache
def _partitions() -> dict[str, str]:
    """AWS's partitions, each with the pattern of its regions' names (botocore's data, which
    its endpoint rules check an ARN's partition against)."""
    import botocore.loaders

    data = botocore.loaders.create_loader().load_data("partitions")
    return {p["id"]: p["regionRegex"] for p in data["partitions"]}


def _addressed(stream: str) -> dict[str, str]:
    """How a Kinesis call names the stream: StreamARN for an ARN, else StreamName."""
    return {"StreamARN": stream} if stream.startswith("arn:") else {"StreamName": stream}


def named_region(settings: Settings) -> str:
    """The region a stream named by its name is read in: OPENPROFILES_AWS_REGION's, else
    OPENPROFILES_REGION's."""
    return settings.aws_region or settings.region


def kinesis_client(settings: Settings, region: str | None = None) -> Any:
    """A Kinesis client in `region` (a stream ARN's), else in `named_region`; at
    OPENPROFILES_KINESIS_ENDPOINT_URL when it is set."""
    return _kinesis_client(settings.kinesis_endpoint_url, region or named_region(settings))


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


def describe_identity(client: Any, stream: str) -> StreamIdentity:
    """The identity of the stream `stream` (its name, or its ARN)."""
    summary = client.describe_stream_summary(**_addressed(stream))["StreamDescriptionSummary"]
    return StreamIdentity(summary["StreamARN"], summary["StreamCreationTimestamp"].astimezone(UTC))


def _of(identity: StreamIdentity) -> ColumnElement[bool]:
    """The checkpoints saved for the stream `identity`."""
    return and_(
        stream_checkpoint.c.stream_arn == identity.arn,
        stream_checkpoint.c.stream_created_at == identity.created_at,
    )


def load_checkpoints(tx: Tx, identity: StreamIdentity) -> dict[str, str]:
    """The stream's checkpoints, shard id → sequence number, or SHARD_END for a shard read to
    its end."""
    query = select(stream_checkpoint.c.shard_id, stream_checkpoint.c.sequence_number).where(
        _of(identity)
    )
    return {r.shard_id: r.sequence_number for r in tx.conn.execute(query)}


def _checkpoint(tx: Tx, shard_id: str, identity: StreamIdentity) -> str | None:
    """One shard's checkpoint (None: read from the start)."""
    return tx.conn.execute(
        select(stream_checkpoint.c.sequence_number).where(
            stream_checkpoint.c.shard_id == shard_id, _of(identity)
        )
    ).scalar()


def claim_checkpoints(tx: Tx, identity: StreamIdentity, *, named_region: str) -> int:
    """Make the checkpoints of the stream's ARN the stream `identity`'s: those of the stream of
    that ARN before it (deleted, and created again under its name) are deleted. How many were
    deleted is returned.

    Checkpoints saved before 0029 know their stream by its name only (stream_checkpoint_by_name,
    migration 0039). Every connector then read its stream by name, in `named_region` (the
    settings' region: kinesis_client): so a stream of that name in that region adopts them, as
    the connector that saved them would have read on after them — unless they were saved before
    the stream was created, when they are of the stream of that name before it, and are deleted.
    A stream of that name in another region (read by its ARN) leaves them alone: they cannot be
    its, and would make it skip records (moto), or fail (AWS), reading after another stream's
    sequence numbers. Two streams of the name in that region, of two accounts, cannot be told
    apart: the first read adopts them (each save then kept the last reader's checkpoint anyway).
    """
    table, by_name = stream_checkpoint, stream_checkpoint_by_name
    dropped = tx.conn.execute(
        delete(table).where(
            table.c.stream_arn == identity.arn, table.c.stream_created_at != identity.created_at
        )
    ).rowcount
    if identity.region == named_region:
        named = by_name.c.stream_name == identity.name
        dropped += tx.conn.execute(
            delete(by_name).where(named, by_name.c.updated_at < identity.created_at)
        ).rowcount
        statement: Any = (
            sqlite_insert(table) if tx.services.database.is_sqlite else pg_insert(table)
        )
        tx.conn.execute(
            statement.from_select(
                [
                    "stream_arn",
                    "shard_id",
                    "stream_name",
                    "sequence_number",
                    "updated_at",
                    "stream_created_at",
                ],
                select(
                    literal(identity.arn, String),
                    by_name.c.shard_id,
                    by_name.c.stream_name,
                    by_name.c.sequence_number,
                    by_name.c.updated_at,
                    literal(identity.created_at, UtcDateTime),
                ).where(named),
            )
            # A checkpoint the stream already has (saved since: a connector on it adopted
            # these meanwhile) is the later one.
            .on_conflict_do_nothing(index_elements=["stream_arn", "shard_id"])
        )
        tx.conn.execute(delete(by_name).where(named))
    return int(dropped or 0)


def _later(new: ColumnElement[Any], old: ColumnElement[Any], *, sqlite: bool) -> Any:
    """SQL for "checkpoint `new` is past `old`". Sequence numbers are decimal strings of up to
    128 digits: PostgreSQL compares them as NUMERIC; SQLite's integers stop at 19 digits, so it
    compares them as digit strings without leading zeros, the longer the greater. SHARD_END is
    past every one (and never cast: CASE decides before the comparison runs)."""
    if not sqlite:
        numbers: Any = cast(new, Numeric) > cast(old, Numeric)
    else:
        new_digits, old_digits = func.ltrim(new, "0"), func.ltrim(old, "0")
        new_length, old_length = func.length(new_digits), func.length(old_digits)
        numbers = or_(
            new_length > old_length,
            and_(new_length == old_length, new_digits > old_digits),
        )
    return case((old == SHARD_END, false()), (new == SHARD_END, true()), else_=numbers)


def _past(sequence_number: str, checkpoint: str | None) -> bool:
    """Whether a stream record is after the shard's checkpoint (not applied yet)."""
    if checkpoint is None:
        return True
    return checkpoint != SHARD_END and int(sequence_number) > int(checkpoint)


def save_checkpoint(tx: Tx, shard_id: str, sequence_number: str, identity: StreamIdentity) -> bool:
    """Record that the shard was applied up to `sequence_number` (SHARD_END: all of it, to its
    end), unless its checkpoint is already there or further (another connector on the stream
    got further): a checkpoint only moves forward, in one statement (atomic on both databases).
    A checkpoint of the stream of that ARN before it (created at another time) is replaced.
    Whether it moved."""
    sqlite = tx.services.database.is_sqlite
    statement: Any = sqlite_insert(stream_checkpoint) if sqlite else pg_insert(stream_checkpoint)
    table, excluded = stream_checkpoint, statement.excluded
    result = tx.conn.execute(
        statement.on_conflict_do_update(
            index_elements=["stream_arn", "shard_id"],
            set_={
                "sequence_number": excluded.sequence_number,
                "updated_at": excluded.updated_at,
                "stream_created_at": excluded.stream_created_at,
            },
            where=or_(
                table.c.stream_created_at != excluded.stream_created_at,
                _later(excluded.sequence_number, table.c.sequence_number, sqlite=sqlite),
            ),
        )
        # A row comes back when it was written (psycopg's rowcount for an upsert is -1).
        .returning(table.c.shard_id),
        {
            "stream_arn": identity.arn,
            "shard_id": shard_id,
            "stream_name": identity.name,
            "sequence_number": sequence_number,
            "updated_at": tx.now,
            "stream_created_at": identity.created_at,
        },
    )
    return result.first() is not None


# The reasons of stream records that hold no contact record to read (they are rejected, kept).
NOT_UTF8 = (
    "The stream record's data is not UTF-8 text; it is kept unchanged, base64-encoded (decode "
    "the base64 to get its bytes)."
)
BLANK = "The stream record's data is empty or only white space: it holds no contact record."


def stream_record_items(data: bytes) -> list[Item]:
    """The records of a stream record's data, as the intake takes them: its contact records
    (a byte order mark before them ignored), or one invalid record when it holds none that can
    be read (not UTF-8: kept as base64 of its bytes; nothing but white space: kept as it is)."""
    try:
        text = codecs.decode(data, "utf-8-sig")
    except UnicodeDecodeError:
        return [(base64.b64encode(data).decode("ascii"), ContactRecordInvalid(NOT_UTF8))]
    if not text.strip():
        return [(text, ContactRecordInvalid(BLANK))]
    return split_body(text)


def _error_code(exc: Exception) -> str:
    """What a failed Kinesis call says, without its message (which can quote what was sent):
    the AWS error code, or the botocore error's type (a network error, a timeout)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code") or type(exc).__name__)
    return type(exc).__name__


class _Backoff:
    """Failures in a row of one shard (or of the stream's own calls), and when it may be tried
    again."""

    def __init__(self) -> None:
        self.failures = 0
        self.due = 0.0

    def failed(self, now: float, jitter: float) -> float:
        self.failures += 1
        ceiling = min(BACKOFF_MAX_SECONDS, BACKOFF_FIRST_SECONDS * 2 ** min(self.failures - 1, 16))
        wait = ceiling / 2 * (1 + jitter)
        self.due = now + wait
        return wait


class _Shard(_Backoff):
    def __init__(self, parents: tuple[str, ...] = ()) -> None:
        super().__init__()
        # ListShards' ParentShardId and AdjacentParentShardId: the shards a reshard closed to
        # open this one, read to their end before it.
        self.parents = parents
        # The NextShardIterator of the last page read; None: made from the checkpoint.
        self.iterator: str | None = None
        # The shard ended (a reshard closed it) and all of it was read: its checkpoint is
        # SHARD_END.
        self.ended = False


class KinesisContactRecords:
    """Polls every shard of one stream (`stream`: its name, or its ARN) and applies its contact
    records.

    `clock` (monotonic seconds) and `jitter` (a number in [0, 1)) are what back-off and the held
    records' retry go by; tests pass their own."""

    def __init__(
        self,
        services: Services,
        stream: str,
        *,
        client: Any = None,
        limit: int = 500,
        retry_held_seconds: float = RETRY_HELD_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
        max_empty_pages: int = MAX_EMPTY_PAGES,
    ) -> None:
        self.services = services
        # Raises StreamInvalid for what is neither a stream's name nor its ARN.
        arn = check_stream(stream)
        # The name, whichever way the stream was named: its records' origins (a dead letter's)
        # and the log's messages are the same read by name or by ARN.
        self.stream_name = arn.name if arn else stream
        # The stream as it was named (its name, or its ARN).
        self.stream = stream
        self._address = _addressed(stream)
        # GetRecords takes no StreamName (its iterator names the stream), but the StreamARN,
        # which botocore routes to the account's endpoint, as it does the other calls.
        self._arn = {"StreamARN": stream} if arn else {}
        self.limit = limit
        self.retry_held_seconds = retry_held_seconds
        self.max_empty_pages = max_empty_pages
        # A stream named by its ARN is read in the ARN's region: a client of another region would
        # not find it (nor reach the account's endpoint: the ARN's region is not in the URL).
        self._client = client or kinesis_client(services.settings, arn.region if arn else None)
        self._clock = clock
        self._jitter = jitter
        self._next_held_retry: float | None = None
        self._identity: StreamIdentity | None = None
        self._shards: dict[str, _Shard] = {}
        self._refresh_due: float | None = None
        self._stream = _Backoff()
        # Polls in a row that the database failed (`run`).
        self._database = _Backoff()
        # The most GetRecords calls made on one shard at the last poll (`run`'s pace).
        self._reads = 0

    def poll_once(self) -> PollResult:
        """Held records sent on (when due), then each shard not backing off, nor read to its
        end, nor waiting for a parent to be, read once (its empty pages followed while it is
        behind); returns what was read and applied."""
        result = PollResult()
        self._reads = 0
        self._send_held_on(result)
        self._refresh(result)
        checkpoints: dict[str, str] | None = None
        # ListShards lists a parent before its children (a child's id is the greater), so a
        # parent read to its end in this loop lets its children be read in the same poll.
        for shard_id, shard in list(self._shards.items()):
            if shard.ended or self._clock() < shard.due or self._waits_for_parent(shard):
                continue
            try:
                if shard.iterator is None:
                    if checkpoints is None:
                        checkpoints = self._checkpoints()
                    if not self._start(shard_id, shard, checkpoints.get(shard_id)):
                        continue
                try:
                    self._read(shard_id, shard, result)
                except Exception as exc:
                    if not (_is_aws_error(exc) and _error_code(exc) == "ExpiredIteratorException"):
                        raise
                    # Kept too long (an iterator lasts 5 minutes): made again from the
                    # checkpoint, and read at once.
                    if self._start(shard_id, shard, self._checkpoints().get(shard_id)):
                        self._read(shard_id, shard, result)
                shard.failures = 0
            except Exception as exc:
                if not _is_aws_error(exc) or caused_by_ctrl_c(exc):
                    raise
                shard.iterator = None
                if _error_code(exc) in _LOOK_AGAIN:
                    self._refresh_due = None
                wait = shard.failed(self._clock(), self._jitter())
                result.failed += 1
                logger.warning(
                    "Kinesis stream %s, shard %s: %s failed (%s); the shard is read again in "
                    "%.1f s, from its checkpoint.",
                    self.stream_name,
                    shard_id,
                    getattr(exc, "operation_name", "a call"),
                    _error_code(exc),
                    wait,
                )
        return result

    def _refresh(self, result: PollResult) -> None:
        """The stream's identity and shards looked up again when due (the first poll, every
        REFRESH_SECONDS, after a shard ended or the stream was gone); on a failure, the stream's
        own calls back off and the shards known go on being read."""
        now = self._clock()
        if (self._refresh_due is not None and now < self._refresh_due) or now < self._stream.due:
            return
        try:
            identity = describe_identity(self._client, self.stream)
            if identity != self._identity:
                self._claim(identity)
            listed = self._list_shards()
        except Exception as exc:
            if not _is_aws_error(exc) or caused_by_ctrl_c(exc):
                raise
            wait = self._stream.failed(now, self._jitter())
            result.failed += 1
            logger.warning(
                "Kinesis stream %s: %s failed (%s); tried again in %.1f s.",
                self.stream_name,
                getattr(exc, "operation_name", "a call"),
                _error_code(exc),
                wait,
            )
            return
        self._stream.failures = 0
        self._shards = {
            shard_id: self._shards.get(shard_id) or _Shard(parents)
            for shard_id, parents in listed.items()
        }
        self._refresh_due = now + REFRESH_SECONDS

    def _claim(self, identity: StreamIdentity) -> None:
        """Take on a stream identity (the first poll, or the stream was created again): its
        checkpoints, the shards read from them."""

        def claim() -> int:
            with self.services.write() as tx:
                return claim_checkpoints(
                    tx, identity, named_region=named_region(self.services.settings)
                )

        dropped = retrying(claim)
        if dropped:
            logger.warning(
                "Kinesis stream %s was deleted and created again (now created at %s): %d "
                "checkpoints of the stream it was before were dropped; its shards are read from "
                "the start (TRIM_HORIZON).",
                self.stream_name,
                identity.created_at.isoformat(),
                dropped,
            )
        self._identity = identity
        self._shards = {}

    def _list_shards(self) -> dict[str, tuple[str, ...]]:
        """The stream's shards, each with its parents, in ListShards' order."""
        shards: dict[str, tuple[str, ...]] = {}
        kwargs: dict[str, Any] = dict(self._address)
        while True:
            page = self._client.list_shards(**kwargs)
            for listed in page.get("Shards", []):
                parents = (listed.get("ParentShardId"), listed.get("AdjacentParentShardId"))
                shards[listed["ShardId"]] = tuple(p for p in parents if p)
            token = page.get("NextToken")
            if not token:
                return shards
            # The token names the stream (ListShards refuses StreamName with it).
            kwargs = {"NextToken": token}

    def _checkpoints(self) -> dict[str, str]:
        identity = self._identity
        assert identity is not None  # shards are only read once the stream was described
        with self.services.read() as tx:
            return load_checkpoints(tx, identity)

    def _waits_for_parent(self, shard: _Shard) -> bool:
        """Whether a parent of the shard is still to be read to its end. A parent no longer
        listed (past the stream's retention) has nothing left to read."""
        return any(p in self._shards and not self._shards[p].ended for p in shard.parents)

    def _start(self, shard_id: str, shard: _Shard, checkpoint: str | None) -> bool:
        """Make the shard's iterator from its checkpoint; False when the checkpoint says it was
        read to its end (before a restart, or by another connector on the stream): it is done
        with, and never read again."""
        if checkpoint == SHARD_END:
            shard.ended = True
            return False
        shard.iterator = self._iterator(shard_id, checkpoint)
        return True

    def _iterator(self, shard_id: str, after: str | None) -> str:
        if after:
            answer = self._client.get_shard_iterator(
                **self._address,
                ShardId=shard_id,
                ShardIteratorType="AFTER_SEQUENCE_NUMBER",
                StartingSequenceNumber=after,
            )
        else:
            answer = self._client.get_shard_iterator(
                **self._address, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
            )
        return str(answer["ShardIterator"])

    def _read(self, shard_id: str, shard: _Shard, result: PollResult) -> None:
        """One page of the shard applied, after at most `max_empty_pages` empty ones while the
        shard is behind; at the shard's end (a reshard closed it), its checkpoint SHARD_END."""
        empty = calls = 0
        while True:
            calls += 1
            self._reads = max(self._reads, calls)
            page = self._client.get_records(
                ShardIterator=shard.iterator, Limit=self.limit, **self._arn
            )
            records = page.get("Records", [])
            behind = int(page.get("MillisBehindLatest") or 0) > 0
            next_iterator = page.get("NextShardIterator")
            ended = next_iterator is None
            if (records or ended) and not self._apply(shard_id, records, result, ended=ended):
                # Read again from the checkpoint: the batch was deferred, or another connector
                # on the stream is further on (or read the shard to its end: SHARD_END).
                shard.iterator = None
                return
            shard.iterator = next_iterator
            if ended:
                # Its children may be read now; they are listed at the next poll.
                shard.ended = True
                self._refresh_due = None
                logger.info(
                    "Kinesis stream %s, shard %s: read to its end (a reshard closed it).",
                    self.stream_name,
                    shard_id,
                )
                return
            if records or not behind:
                return
            empty += 1
            if empty >= self.max_empty_pages:
                # The next poll goes on from here (a shard allows 5 GetRecords a second).
                return

    def _apply(
        self,
        shard_id: str,
        records: Sequence[dict[str, Any]],
        result: PollResult,
        *,
        ended: bool = False,
    ) -> bool:
        """Apply a page's records and save the shard's checkpoint after them (SHARD_END when
        the page `ended` the shard): in one transaction on SQLite; on PostgreSQL a bounded
        number of contact records a transaction (store.chunks: the shared lock table), each
        saving the checkpoint at its last stream record, so a crash between two resumes after
        the last one committed. False when a transaction was deferred (a request error: the
        records from it on are read again) or another connector had got further (the records
        it had applied are skipped). A transaction the database failed raises (one of
        DATABASE_ERRORS: `run` waits it out), as does one Ctrl-C or SIGTERM cut short."""
        # Each stream record with its contact records, read once: what a transaction holds.
        read = [(record, stream_record_items(record["Data"])) for record in records]
        chunks: list[Sequence[tuple[dict[str, Any], list[Item]]]] = list(
            transaction_chunks(
                read, is_sqlite=self.services.database.is_sqlite, records=lambda r: len(r[1])
            )
        ) or [[]]  # a page without records that ends the shard: its checkpoint alone
        left = len(records)
        for number, chunk in enumerate(chunks, 1):
            final = number == len(chunks)
            last = SHARD_END if ended and final else chunk[-1][0]["SequenceNumber"]
            try:
                outcome, applied, moved = self._apply_chunk(shard_id, chunk, last)
            except ServiceError as exc:
                if isinstance(exc, InternalServer) or caused_by_ctrl_c(exc):
                    # The database failed the transaction (a lock not granted in time, races
                    # lost until `retrying` gave up, a commit cut off), or Ctrl-C / SIGTERM
                    # did: no request error to defer, but the poll failing, which `run` waits
                    # out (longer with each such poll in a row) and `--once` reports with
                    # status 1. The transaction was rolled back (a commit cut off may have
                    # gone through: read again, its records are deduplicated), so the
                    # checkpoint stays before its records.
                    raise
                # A request error: the other shards go on; this one is read again from its
                # checkpoint next time.
                logger.warning(
                    "Kinesis stream %s, shard %s: %s; its %d records are read again at the next "
                    "poll.",
                    self.stream_name,
                    shard_id,
                    exc.message,
                    left,
                )
                result.deferred += left
                return False
            left -= len(chunk)
            result.stream_records += applied
            result.accepted += outcome.accepted
            result.rejected += len(outcome.rejected)
            result.held += outcome.held
            if outcome.woken is not None:
                # Kept records the batch sent on with the contact they continue
                # (contacts.waiting).
                result.replayed += outcome.woken.sent_on
            if not moved:
                return False
        return True

    def _apply_chunk(
        self, shard_id: str, chunk: Sequence[tuple[dict[str, Any], list[Item]]], last: str
    ) -> tuple[BatchOutcome, int, bool]:
        """Apply the stream records of `chunk` not applied yet and move the shard's checkpoint
        to `last`, in one transaction: (outcome, stream records applied, whether it moved)."""
        identity = self._identity
        assert identity is not None  # shards are only read once the stream was described

        def apply() -> tuple[BatchOutcome, int, bool]:
            with self.services.write() as tx:
                # Two connectors on one stream: the second waits here until the first commits,
                # then reads the checkpoint the first saved (READ COMMITTED: a statement sees
                # what was committed before it began) and skips what it applied. A lock named
                # by the shard rather than its row, as the shard's first batch has no row yet.
                # Taken first, and by nothing else, so it waits for no lock of the batch's
                # (store.advisory's order). SQLite's one writer serialises them already.
                take_locks(tx, [("stream-checkpoint", identity.arn, shard_id)])
                done = _checkpoint(tx, shard_id, identity)
                fresh = [(r, found) for r, found in chunk if _past(r["SequenceNumber"], done)]
                items, origins = self._items(shard_id, fresh)
                outcome = (
                    ingest_contact_items(tx, items, hold_unavailable=True, origins=origins)
                    if items
                    else BatchOutcome()
                )
                moved = save_checkpoint(tx, shard_id, last, identity)
            return outcome, len(fresh), moved

        # A transaction that lost a race with a server's writes (PostgreSQL) runs again.
        return retrying(apply)

    def _items(
        self, shard_id: str, records: Sequence[tuple[dict[str, Any], list[Item]]]
    ) -> tuple[list[Item], list[str | None]]:
        """The contact records of stream records (each with those read from its data), each
        with its origin (the stream record's position, and which of its records when it holds
        several): read twice, by a second connector or after a checkpoint was reset, a rejected
        one has one dead letter."""
        items: list[Item] = []
        origins: list[str | None] = []
        for record, found in records:
            origin = (
                f"Kinesis stream {self.stream_name}, shard {shard_id}, sequence number "
                f"{record['SequenceNumber']}"
            )
            items.extend(found)
            if len(found) == 1:
                origins.append(origin)
            else:
                origins.extend(f"{origin}, record {n}" for n in range(1, len(found) + 1))
        return items, origins

    def _send_held_on(self, result: PollResult) -> None:
        """Send held records on to the domains that can take them now, oldest first, `limit` a
        transaction (contacts.sweep.send_kept_on); nothing (not even a look) before
        `retry_held_seconds` since the last try."""
        now = self._clock()
        if self._next_held_retry is not None and now < self._next_held_retry:
            return
        self._next_held_retry = now + self.retry_held_seconds
        outcome = send_kept_on(self.services, limit=self.limit)
        # Those held again (their domain failed meanwhile) are no record sent on.
        result.replayed += outcome.accepted + len(outcome.rejected) - outcome.held

    def _idle(self, idle_seconds: float) -> float:
        """How long `run` waits after a poll that read nothing: `idle_seconds`, or less when a
        shard backing off may be read again before."""
        now = self._clock()
        dues = [s.due - now for s in self._shards.values() if not s.ended and s.due > now]
        return min([idle_seconds, *dues])

    def run(self, stop: threading.Event, idle_seconds: float = 1.0) -> None:
        """Poll until `stop` is set, waiting `idle_seconds` whenever the stream is drained, and
        between polls as long as READ_INTERVAL_SECONDS asks (a failed Kinesis call does not stop
        it: what failed backs off).

        Nor does the database failing a poll (out of reach for a moment, locked, read-only, a
        commit whose outcome is unknown: `database_may_recover`): the poll ends there, its type
        is logged, and the next one waits as a failed Kinesis call does, longer with each such
        poll in a row. What it had not applied is read again: a batch and its checkpoint are
        one transaction, so the checkpoint stays before it, and every shard is read from its
        checkpoint again (its iterator may stand past the batch that failed). Any other error,
        a database error that waiting would not mend (a missing table, a statement the database
        refuses) as much as a bug in this code, stops `run`: it is logged with its traceback and
        raised (`openprofiles connectors kinesis` says so, and exits with status 1)."""
        while not stop.is_set():
            started = self._clock()
            try:
                drained = self.poll_once().stream_records == 0
            except DATABASE_ERRORS as exc:
                if caused_by_ctrl_c(exc):
                    # Ctrl-C or SIGTERM came inside the driver's call (the pool's ping of a
                    # connection), which failed with an error of its own: a stop, not the
                    # database failing; the command ends as Ctrl-C ends it.
                    raise
                if not database_may_recover(exc):
                    # Polling again would fail the same way forever: the operator must know.
                    logger.error(
                        "Kinesis stream %s: a poll failed in the database (%s), which waiting "
                        "will not mend; the connector stops.",
                        self.stream_name,
                        database_error_name(exc),
                        exc_info=exc,
                    )
                    raise
                for shard in self._shards.values():
                    shard.iterator = None
                wait = self._database.failed(self._clock(), self._jitter())
                # The types only: a database error's message can quote the values it was sent.
                logger.warning(
                    "Kinesis stream %s: a poll failed in the database (%s); polled again in "
                    "%.1f s, each shard from its checkpoint.",
                    self.stream_name,
                    database_error_name(exc),
                    wait,
                )
                stop.wait(wait)
                continue
            self._database.failures = 0
            pace = self._reads * READ_INTERVAL_SECONDS - (self._clock() - started)
            wait = max(self._idle(idle_seconds) if drained else 0.0, pace)
            if wait > 0:
                stop.wait(wait)


# What a poll raises when the database failed it: an error of the database or its driver (the
# driver's own, unwrapped, where a statement goes to it directly: SQLite's BEGIN IMMEDIATE,
# store.database), the pool waiting too long for a connection, a transaction that kept failing
# (store.conflicts) or whose commit was cut off (context.CommitOutcomeUnknown).
# `database_may_recover` tells the failures that waiting may mend from those it never will.
DATABASE_ERRORS: tuple[type[Exception], ...] = (
    DBAPIError,
    sqlite3.Error,
    SQLAlchemyTimeoutError,
    InternalServer,
)


def database_may_recover(exc: Exception) -> bool:
    """Whether a poll's database error is the database failing for a while, so that polling
    again later may get through: a lost race or a connection dropped (store.conflicts), the
    database locked, read-only, full or failing I/O (store.database.storage_failure), the pool
    out of connections, and on PostgreSQL any OperationalError (the server unreachable, shut
    down, out of resources, a statement cancelled). Not an error of the statement or the schema
    (a missing table or column, a syntax error, a constraint or a value the database refuses):
    SQLite reports a missing table as an OperationalError too, so its result code decides
    there (SQLITE_ERROR is the statement's)."""
    if isinstance(exc, SQLAlchemyTimeoutError | InternalServer):
        # InternalServer: `retrying` gave up on transient failures, or a commit was cut off.
        return True
    if isinstance(exc, DBAPIError) and is_transient(exc):
        return True
    if storage_failure(exc) is not None:
        return True
    sqlite_code = getattr(getattr(exc, "orig", None) or exc, "sqlite_errorcode", None)
    if sqlite_code is not None:
        # Locked, as store.conflicts judges it, also when the driver raised it unwrapped.
        return sqlite_locked(sqlite_code)
    return isinstance(exc, OperationalError)


def database_failure(exc: Exception) -> str:
    """What to tell the operator of a poll the database failed (the error's types only: its
    message can quote the values it was sent)."""
    said = f"The poll failed in the database ({database_error_name(exc)})"
    if not database_may_recover(exc):
        said += (
            ", with an error that trying again will not mend (the statement or the database's "
            "schema is at fault, not its availability)"
        )
    return (
        said
        + "; nothing past the last checkpoint was applied, and the next run reads on from there."
    )


def database_error_name(exc: Exception) -> str:
    """A database error's type, and its driver's (psycopg's UndefinedTable, SQLite's
    OperationalError); never its message."""
    orig = getattr(exc, "orig", None)
    name = type(exc).__name__
    if orig is not None:
        return f"{name}, {type(orig).__name__}"
    cause = exc.__cause__
    # A ServiceError the store raised from the database's (store.conflicts.retrying giving
    # up, a lock not granted in time): which database error it was.
    if isinstance(cause, DBAPIError | sqlite3.Error):
        return f"{name}, from {database_error_name(cause)}"
    return name


def _is_aws_error(exc: Exception) -> bool:
    """A failed Kinesis call: an error AWS answered (ClientError) or one of botocore's own (the
    network, a timeout, a response it could not read)."""
    from botocore.exceptions import BotoCoreError, ClientError

    return isinstance(exc, ClientError | BotoCoreError)
