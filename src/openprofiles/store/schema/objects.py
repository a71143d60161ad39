"""Profile objects (what PutProfileObject stores), their key digests, and the dead-letter store.

A profile object is one row per (domain, object type, UNIQUE key value): re-ingesting the same
UNIQUE value replaces the row (spec §1.5). The UNIQUE value appears only as a blind-index digest;
the object itself is sealed. `profile_object_key` holds the digests of the object's other keys so
ListProfileObjects can filter by a key and standard objects (`_asset`, `_case`, ...) can be found
by their identifiers (spec §1.5) without opening any blob.

The tables are registered for DeleteDomain by openprofiles.objects.service and
openprofiles.dlq.service, not here: importing domains.service from a schema module would make
an import cycle (domains.service imports the schema package).
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
)

from openprofiles.store.schema.core import metadata
from openprofiles.store.types import UtcDateTime

profile_object = Table(
    "profile_object",
    metadata,
    Column("domain_name", String(64), primary_key=True),
    Column("object_type_name", String(255), primary_key=True),
    # Digest of the normalised UNIQUE key value; its hex form is the ProfileObjectUniqueKey.
    Column("unique_digest", LargeBinary(16), primary_key=True),
    Column("profile_id", String(32), nullable=False),
    Column("sealed", LargeBinary, nullable=False),
    # Length of the submitted object, for DomainStats.TotalSize and the per-profile quota.
    Column("size", Integer, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    # Fixed at ingestion from ExpirationDays / DefaultExpirationDays (spec §1.9).
    Column("expires_at", UtcDateTime, nullable=True),
    Column("source_last_updated", UtcDateTime, nullable=True),
    # When the contact started (its InitiationTimestamp), for an object carrying one: contact
    # records are listed newest contact first (contacts.history). Kept in clear, like the row's
    # other times: a time, not a value of the customer's (no name, number, address or content),
    # and no more than updated_at already tells of a record delivered as its contact happens.
    Column("contact_start", UtcDateTime, nullable=True),
    # The rows one transaction stores share created_at and updated_at (its clock reading): this
    # numbers them in the order it stored them, so that the oldest object is the first written
    # (eviction, spec §1.9) and ListProfileObjects lists newest first stored first. A row
    # written again keeps its number (objects.service.write_objects), as it keeps created_at:
    # its place in the listing does not move. Not a global sequence: ties come from one
    # transaction.
    Column("write_order", Integer, nullable=False, server_default="0"),
    ForeignKeyConstraint(
        ["domain_name", "profile_id"],
        ["profile.domain_name", "profile.profile_id"],
        ondelete="CASCADE",
    ),
    # A profile's objects: listing those of a type newest first and evicting the oldest (in
    # write order), counting them per type or per profile for the quota, and counting and sizing
    # a domain's live objects per profile for GetDomain's Stats (MeteringProfileCount), each
    # from this index alone where the query needs no other column. One index rather than two
    # with the same (domain, profile) start: each is one more B-tree every write changes at a
    # random place (migration 0034).
    Index(
        "ix_profile_object_profile",
        "domain_name",
        "profile_id",
        "object_type_name",
        "updated_at",
        "write_order",
        "expires_at",
        "size",
    ),
    # No index orders a profile's contact records by contact_start (objects.service.
    # list_profile_contacts): one cost every ingested record 14 % of the pipeline's rate
    # (migration 0024), while a page sorts at most the profile's own records of the type
    # (MaxProfileObjectCount), found by ix_profile_object_profile.
    # The periodic purge of expired objects (objects.service.purge_expired_chunk) goes through
    # them in this order, a chunk a transaction from where the last ended: the primary key after
    # the expiry makes that place one object, however many share its expiry (migration 0038).
    Index(
        "ix_profile_object_expires",
        "expires_at",
        "domain_name",
        "object_type_name",
        "unique_digest",
    ),
)

profile_object_key = Table(
    "profile_object_key",
    metadata,
    Column("domain_name", String(64), primary_key=True),
    Column("object_type_name", String(255), primary_key=True),
    Column("unique_digest", LargeBinary(16), primary_key=True),
    Column("key_name", String(255), primary_key=True),
    Column("digest", LargeBinary(16), primary_key=True),
    ForeignKeyConstraint(
        ["domain_name", "object_type_name", "unique_digest"],
        [
            "profile_object.domain_name",
            "profile_object.object_type_name",
            "profile_object.unique_digest",
        ],
        ondelete="CASCADE",
    ),
    Index("ix_profile_object_key_lookup", "domain_name", "object_type_name", "key_name", "digest"),
)

dlq_message = Table(
    "dlq_message",
    metadata,
    Column("domain_name", String(64), primary_key=True),
    Column("message_id", String(32), primary_key=True),
    Column("object_type_name", String(255), nullable=False),
    # {"object": the submitted Object string, "reason": why it was rejected}.
    Column("sealed", LargeBinary, nullable=False),
    # no_profile | missing_key | ambiguous | invalid_value | transient
    Column("reason_category", String(32), nullable=False),
    Column("attempts", Integer, nullable=False),
    # Where the record's SQS send stands, as one of dlq.service's fixed marks (pending, no queue,
    # failed, resending since, sent without its object; None once sent): no personal data.
    Column("sink_error", Text, nullable=True),
    # Why the send failed, or why the object went without: {"detail": text} sealed with the
    # domain's key, bound to (domain, "dlq_message_sink", message id). It names the queue and
    # quotes the queue's or the network's own error text, which this server does not control and
    # which may echo what was sent (the reason, quoting a record's value).
    Column("sink_sealed", LargeBinary, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("last_attempt_at", UtcDateTime, nullable=False),
    # For a record read from a file or a flow: a keyed digest of (object type, origin, record)
    # under the domain's key, so reading the same file again counts another attempt on its
    # letter instead of a second letter (dlq.sinks.dead_letter_in). NULL for the API's.
    Column("repeat_digest", LargeBinary(16), nullable=True),
    ForeignKeyConstraint(["domain_name"], ["domain.name"], ondelete="CASCADE"),
    Index("ix_dlq_message_created", "domain_name", "created_at"),
    Index("ux_dlq_message_repeat", "domain_name", "repeat_digest", unique=True),
    # GET /metrics' dead-letter counts (dlq.service.count_letters) read this index alone, not
    # the table of sealed records (migration 0043).
    Index("ix_dlq_message_category", "domain_name", "reason_category", "sink_error"),
)
