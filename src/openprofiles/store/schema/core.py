"""Core tables: credentials, domains, tags, profiles and profile keys (the shared `metadata`
every other schema module adds its tables to)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Column,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

from openprofiles.store.types import UtcDateTime

metadata = MetaData()

credential = Table(
    "credential",
    metadata,
    Column("access_key_id", String(32), primary_key=True),
    # The secret is needed in clear to verify SigV4, so it is sealed (not hashed).
    Column("secret_sealed", LargeBinary, nullable=False),
    Column("role", String(16), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    # The domains the key may act on, a JSON array of names (auth.scope); NULL: every domain.
    Column("domain_scope", JSON(none_as_null=True), nullable=True),
)

domain = Table(
    "domain",
    metadata,
    Column("name", String(64), primary_key=True),
    # The key that wraps the domain's data key, and the wrapped data key itself.
    Column("key_id", String(2048), nullable=False),
    Column("wrapped_key", LargeBinary, nullable=False),
    # For a key that is a KMS alias ARN: the key it named when it last unwrapped the data key
    # whose SHA-256 is `aliased_key_digest` (KMS does not say once the alias is gone, and
    # `domains drop-unreadable` must know which key to prove deleted; domains.unreadable).
    Column("aliased_key_arn", String(2048), nullable=True),
    Column("aliased_key_digest", LargeBinary, nullable=True),
    # The domain's settings as the API names them (no personal data): DefaultExpirationDays,
    # DefaultEncryptionKey, DeadLetterQueueUrl, Matching, RuleBasedMatching, DataStore.
    Column("config", JSON, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

# The local keys `openprofiles keys create` made and the versions `keys rotate` gave them (ids
# and counts, no key material): a keyring lacking one is older than the database, which
# `domains drop-unreadable` must never take for a lost key (domains.unreadable).
local_key_record = Table(
    "local_key_record",
    metadata,
    Column("key_id", String(64), primary_key=True),
    Column("versions", Integer, nullable=False),
    Column("recorded_at", UtcDateTime, nullable=False),
)

resource_tag = Table(
    "resource_tag",
    metadata,
    # Text: an integration's ARN holds its Uri percent-encoded whole
    # (integrations.service.integration_arn), up to 12 characters for each of its 255. Migration
    # 0048.
    Column("resource_arn", Text, primary_key=True),
    # Lets DeleteDomain remove the tags of everything in the domain.
    Column("domain_name", String(64), nullable=False, index=True),
    Column("tags", JSON, nullable=False),
)

profile = Table(
    "profile",
    metadata,
    Column("domain_name", String(64), primary_key=True),
    Column("profile_id", String(32), primary_key=True),
    Column("sealed", LargeBinary, nullable=False),
    Column("version", Integer, nullable=False),
    # Set when the profile was merged into another; its id then resolves to that one.
    Column("merged_into", String(32), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    ForeignKeyConstraint(["domain_name"], ["domain.name"], ondelete="CASCADE"),
    # Counting a domain's live profiles (GetDomain Stats) from the index alone.
    Index("ix_profile_live", "domain_name", "merged_into"),
)

profile_key = Table(
    "profile_key",
    metadata,
    Column("domain_name", String(64), primary_key=True),
    Column("key_name", String(255), primary_key=True),
    Column("digest", LargeBinary(16), primary_key=True),
    Column("profile_id", String(32), primary_key=True),
    # What backs the key: "@profile" (derived from standard fields, recomputed on every
    # change), "@explicit" (AddProfileKey), "@relinked" (an agent's `_ctrContactId` link that
    # a later one superseded: contacts.links), "@merge" (a merged profile's derived key) or an
    # object type name (ingestion). Part of the key: a value backed by several sources has a
    # row for each, so removing one source (deleting an object type, changing a field) leaves
    # the value searchable while another still backs it. The markers start with "@", which
    # no object type name can (^[a-zA-Z_][a-zA-Z_0-9-]*$), so a type named "profile" cannot
    # be taken for one (migration 0017).
    Column("origin", String(255), primary_key=True),
    # The value itself, sealed, so an agent can see a profile's keys.
    Column("value_sealed", LargeBinary, nullable=False),
    ForeignKeyConstraint(
        ["domain_name", "profile_id"],
        ["profile.domain_name", "profile.profile_id"],
        ondelete="CASCADE",
    ),
    Index("ix_profile_key_profile", "domain_name", "profile_id"),
)
