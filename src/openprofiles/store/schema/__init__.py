"""The one schema, shared by SQLite and PostgreSQL, one module per family of tables.

Every table that holds a domain's data leads with `domain_name`, the distribution key a
Citus-style deployment shards on. Personal data never appears in a column in clear text:
`sealed` columns hold AES-GCM blobs (see crypto/) and `digest` columns hold keyed HMAC digests of
normalised key values (a blind index). Changing a table requires an Alembic migration in
store/migrations/versions.
"""

from openprofiles.store.schema.core import (
    credential,
    domain,
    metadata,
    profile,
    profile_key,
    resource_tag,
)

__all__ = ["credential", "domain", "metadata", "profile", "profile_key", "resource_tag"]
