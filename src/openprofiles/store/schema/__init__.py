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
from openprofiles.store.schema.identity import (
    identity_job,
    kept_apart,
    merge_log,
    ml_feature,
    ml_match_member_page,
    ml_match_page,
    rule_match_digest,
    rule_match_profile,
)
from openprofiles.store.schema.integrations import (
    contact_awaited,
    contact_record,
    contact_shared_endpoint,
    flow_item,
    flow_run,
    instance_moved_from,
    integration,
    stream_checkpoint,
    stream_checkpoint_by_name,
    unrouted_contact_record,
)
from openprofiles.store.schema.object_types import object_type
from openprofiles.store.schema.objects import dlq_message, profile_object, profile_object_key
from openprofiles.store.schema.web import (
    signin_throttle,
    web_credential_form,
    web_form_submission,
    web_session,
    web_user,
)

__all__ = [
    "contact_awaited",
    "contact_record",
    "contact_shared_endpoint",
    "credential",
    "dlq_message",
    "domain",
    "flow_item",
    "flow_run",
    "identity_job",
    "instance_moved_from",
    "integration",
    "kept_apart",
    "merge_log",
    "metadata",
    "ml_feature",
    "ml_match_member_page",
    "ml_match_page",
    "object_type",
    "profile",
    "profile_key",
    "profile_object",
    "profile_object_key",
    "resource_tag",
    "rule_match_digest",
    "rule_match_profile",
    "signin_throttle",
    "stream_checkpoint",
    "stream_checkpoint_by_name",
    "unrouted_contact_record",
    "web_credential_form",
    "web_form_submission",
    "web_session",
    "web_user",
]
