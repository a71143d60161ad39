"""Integration tables: integrations (PutIntegration), contact records received, records that
no domain could take, flow runs and their checkpoints, and stream checkpoints.

* `integration` holds one row per (domain, Uri). When the Uri is a contact-centre instance ARN,
  `instance_arn` repeats it under a UNIQUE constraint: an instance belongs to one domain at a
  time (spec §3.2), enforced by the database even against concurrent writers.
* `contact_record` remembers, per domain and ContactId (as a blind-index digest), the
  LastUpdateTimestamp of the record applied, so duplicate deliveries are idempotent and an
  older record never overwrites a newer one (spec §3.1: delivered at least once), and the
  profile it was applied to: DeleteProfile deletes the row with the profile.
* `unrouted_contact_record` keeps records that could not be given to any domain (their instance
  is associated with none, or they name no instance), sealed under the system key, so nothing
  is dropped; they can be replayed once the instance is associated. It also keeps, for a
  while, the records that wait for a contact they continue: `contact_awaited` says which
  (contacts.links).
* `flow_run` / `flow_item` record flow runs (progress and counts) and which source files or
  objects a flow has already read (its checkpoint for Event and incremental Scheduled runs).
  `integration.flow_item_changes` counts the changes of a flow's flow_item rows (0041), so
  that a process can tell that those it read are still the database's without reading them.
  A run's error is sealed (it can quote a record's value), and an item is known by a
  blind-index digest of its key (an object key or file name can carry a customer's name or
  email; the checkpoint only needs to tell whether a listed key was read).
* `stream_checkpoint` is the last sequence number applied per stream shard (Kinesis connector),
  keyed by the stream's ARN (DescribeStreamSummary's StreamARN: its partition, region, account
  and name), so that streams of one name in two regions or accounts read into one database keep
  their own (before 0039 they were keyed by the name, and overwrote each other's). The stream's
  creation time goes with it: a stream deleted and created again under the same name has the
  same ARN but is another stream, whose sequence numbers do not follow on.
* `stream_checkpoint_by_name` keeps the checkpoints saved before 0029, which know their stream
  by its name only (0039 moved them there). A connector adopts them, under its stream's ARN, the
  first time it reads a stream of that name in the region a connector reading by name reads
  in (the only region they could have been read in); the others stay here
  (connectors.kinesis.claim_checkpoints).

integrations/service.py, contacts/service.py and flows/service.py register the domain tables
for DeleteDomain (importing domains.service here would make an import cycle).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
    literal_column,
)

from openprofiles.store.schema.core import metadata
from openprofiles.store.types import UtcDateTime

integration = Table(
    "integration",
    metadata,
    Column("domain_name", String(64), primary_key=True),
    Column("uri", String(255), primary_key=True),
    Column("object_type_name", String(255), nullable=True),
    Column("object_type_names", JSON, nullable=True),
    # Configuration as the API names it (RoleArn, EventTriggerNames, Scope, WorkflowId,
    # IsUnstructured): no personal data.
    Column("settings", JSON, nullable=False),
    # The FlowDefinition, sealed with the domain's key and bound to (domain, table, Uri): its
    # Filter tasks may compare a field with a customer's value, its source name a file of one.
    Column("flow_sealed", LargeBinary, nullable=True),
    # The Uri again when it is a contact-centre instance ARN (see the module docstring).
    Column("instance_arn", String(255), nullable=True),
    # The flow's name when the integration has a FlowDefinition.
    Column("flow_name", String(256), nullable=True),
    # How many times the flow's checkpoints (flow_item rows) changed: bumped in the transaction
    # of every change (flows.checkpoint_store `_items_changed`), and by every other update of the
    # row (`onupdate`: PutIntegration renaming the flow deletes its checkpoints with that update),
    # so that an Event check that finds it as it last read it knows the checkpoints it read
    # then are still the database's (flows.check_cache). 0 for rows before 0041.
    Column(
        "flow_item_changes",
        BigInteger,
        nullable=False,
        server_default="0",
        onupdate=literal_column("flow_item_changes + 1"),
    ),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    ForeignKeyConstraint(["domain_name"], ["domain.name"], ondelete="CASCADE"),
    UniqueConstraint("instance_arn", name="uq_integration_instance_arn"),
    Index("ix_integration_uri", "uri"),
)

contact_record = Table(
    "contact_record",
    metadata,
    Column("domain_name", String(64), primary_key=True),
    # Blind-index digest of the ContactId (key name _ctrContactId).
    Column("contact_digest", LargeBinary(16), primary_key=True),
    Column("last_update", UtcDateTime, nullable=True),
    # True while only a contact-start event was applied: any full record replaces it.
    Column("partial", Boolean, nullable=False),
    Column("object_type_name", String(255), nullable=False),
    Column("profile_id", String(32), nullable=True),
    Column("received_at", UtcDateTime, nullable=False),
    ForeignKeyConstraint(["domain_name"], ["domain.name"], ondelete="CASCADE"),
    # DeleteProfile finds the deleted profiles' records by it (contacts.service).
    Index("ix_contact_record_profile", "domain_name", "profile_id"),
)

unrouted_contact_record = Table(
    "unrouted_contact_record",
    metadata,
    Column("message_id", String(32), primary_key=True),
    # NULL when the record names no instance at all.
    Column("instance_arn", String(255), nullable=True),
    # {"object": the record as received, "reason": why no domain took it}, system-sealed.
    Column("sealed", LargeBinary, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    # A keyed digest of the record under the system key: a record delivered again while it is
    # kept (a re-read file, a stream's redelivery) is kept once (contacts.kept). NULL for
    # records kept before 0025.
    Column("content_digest", LargeBinary(16), nullable=True),
    # The domain a held record waits for (contacts.kept): its instance's domain, whose key
    # could not be used, or a domain the instance left whose KMS did not answer. NULL for a
    # record its instance's domain takes once associated (kept unassociated, or before 0036).
    Column("held_for", String(64), nullable=True),
    Index("ix_unrouted_contact_record_instance", "instance_arn", "created_at"),
    Index("ux_unrouted_contact_record_content", "content_digest", unique=True),
)

# A kept record waiting for a contact it continues (contacts.links): one row per contact
# that would place it, by the contact's blind-index digest in the domain it was routed to.
# The kept-records sweep finds by it the waiting records whose contact came; a record kept
# without such rows is an ordinary held or unrouted one.
contact_awaited = Table(
    "contact_awaited",
    metadata,
    Column("domain_name", String(64), primary_key=True),
    Column("contact_digest", LargeBinary(16), primary_key=True),
    Column("message_id", String(32), primary_key=True),
    ForeignKeyConstraint(["domain_name"], ["domain.name"], ondelete="CASCADE"),
    ForeignKeyConstraint(
        ["message_id"], ["unrouted_contact_record.message_id"], ondelete="CASCADE"
    ),
    Index("ix_contact_awaited_message", "message_id"),
)

# The caller's endpoint (phone number or email address) of a contact-start event rejected
# because several profiles share it (contacts.shared_endpoint), sealed under the domain's key,
# for the agent's screen pop to show those profiles during the contact's live period. Found by
# the contact's blind-index digest; `endpoint_digest` is the endpoint's under `key_name`, as
# profile_key holds it, so that DeleteProfile of a profile holding it takes it too.
contact_shared_endpoint = Table(
    "contact_shared_endpoint",
    metadata,
    Column("domain_name", String(64), primary_key=True),
    Column("contact_digest", LargeBinary(16), primary_key=True),
    Column("key_name", String(255), nullable=False),
    Column("endpoint_digest", LargeBinary(16), nullable=False),
    Column("sealed", LargeBinary, nullable=False),
    Column("kept_at", UtcDateTime, nullable=False),
    ForeignKeyConstraint(["domain_name"], ["domain.name"], ondelete="CASCADE"),
    # The sweep purges those past the live period by it.
    Index("ix_contact_shared_endpoint_kept", "kept_at"),
)

# The domains a contact-centre instance was moved away from (contacts.service
# connect_instance): an update of a contact applied there before the move goes there, where
# its profile is, not to the new domain as a new contact. Gone when the instance comes back.
instance_moved_from = Table(
    "instance_moved_from",
    metadata,
    Column("domain_name", String(64), primary_key=True),
    Column("instance_arn", String(255), primary_key=True),
    Column("moved_at", UtcDateTime, nullable=False),
    ForeignKeyConstraint(["domain_name"], ["domain.name"], ondelete="CASCADE"),
    Index("ix_instance_moved_from_instance", "instance_arn"),
)

flow_run = Table(
    "flow_run",
    metadata,
    Column("domain_name", String(64), primary_key=True),
    Column("run_id", String(32), primary_key=True),
    Column("flow_name", String(256), nullable=False),
    # OnDemand | Scheduled | Event: what started the run.
    Column("trigger", String(16), nullable=False),
    # RUNNING | COMPLETED | FAILED
    Column("status", String(16), nullable=False),
    Column("items_read", Integer, nullable=False),
    Column("records_read", Integer, nullable=False),
    Column("records_ingested", Integer, nullable=False),
    Column("records_filtered", Integer, nullable=False),
    Column("records_dead_lettered", Integer, nullable=False),
    # Why the run failed, sealed with the domain's key and bound to (domain, table, run id): a
    # source's message can name an object key, a task's or the pipeline's can quote a value.
    Column("error_sealed", LargeBinary, nullable=True),
    Column("started_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime, nullable=True),
    # When a RUNNING run last committed a batch or an item: one silent for longer than
    # flows.runs.STALE_AFTER was stopped (its process killed) and is shown FAILED. NULL for
    # runs started before 0028 (their start counts).
    Column("progress_at", UtcDateTime, nullable=True),
    ForeignKeyConstraint(["domain_name"], ["domain.name"], ondelete="CASCADE"),
    Index("ix_flow_run_flow", "domain_name", "flow_name", "started_at"),
)

# The runs holding (or last holding) their flow: a run's claim looks for its flow's RUNNING run
# (flows.claims.claim), among all the flow's runs (RUNNING ones are never pruned).
Index(
    "ix_flow_run_running",
    flow_run.c.domain_name,
    flow_run.c.flow_name,
    sqlite_where=flow_run.c.status == "RUNNING",
    postgresql_where=flow_run.c.status == "RUNNING",
)

flow_item = Table(
    "flow_item",
    metadata,
    Column("domain_name", String(64), primary_key=True),
    Column("flow_name", String(256), primary_key=True),
    # Blind-index digest (key name flows.item_keys.ITEM_KEY_NAME) of the S3 object key or the
    # file name inside the folder.
    Column("item_digest", LargeBinary(16), primary_key=True),
    # ETag (S3) or modification time and size (folder): a changed item is read again. Or a
    # mark with it (flows.checkpoints): a failed item's names every record of it set aside, so
    # text of any length (0040).
    Column("version", Text, nullable=False),
    Column("processed_at", UtcDateTime, nullable=False),
    ForeignKeyConstraint(["domain_name"], ["domain.name"], ondelete="CASCADE"),
)

stream_checkpoint = Table(
    "stream_checkpoint",
    metadata,
    # DescribeStreamSummary's StreamARN of the stream read: the checkpoint's stream.
    Column("stream_arn", String(2048), primary_key=True),
    Column("shard_id", String(255), primary_key=True),
    # The stream's name (the end of its ARN), for whoever looks at the table.
    Column("stream_name", String(255), nullable=False),
    Column("sequence_number", String(128), nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    # DescribeStreamSummary's StreamCreationTimestamp: which of the streams that had the ARN.
    Column("stream_created_at", UtcDateTime, nullable=False),
)

# Checkpoints saved before 0029, by the stream's name alone (see the module docstring).
stream_checkpoint_by_name = Table(
    "stream_checkpoint_by_name",
    metadata,
    Column("stream_name", String(255), primary_key=True),
    Column("shard_id", String(255), primary_key=True),
    Column("sequence_number", String(128), nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)
