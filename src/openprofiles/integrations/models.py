"""Records of the integrations package."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# arn:{partition}:connect:{region}:{account}:instance/{id} (spec §3.2). Every part is bounded
# and ASCII: the partition AWS's (aws, aws-cn, aws-us-gov, aws-iso-b, aws-eusc, ...: "aws" and
# at most two words), the region at most 32 characters, the account 12 ASCII digits (`\d` took
# Arabic-Indic ones). The longest match has 217 characters, within the String(255) columns that
# keep an instance's ARN (integration.uri and instance_arn, the kept records'): an unbounded
# region let a longer one through, which PostgreSQL then refused, failing a whole batch of
# contact records.
INSTANCE_ARN = re.compile(
    r"^arn:aws(?:-[a-z]{1,8}){0,2}:connect:[a-z0-9-]{1,32}:[0-9]{12}"
    r":instance/[A-Za-z0-9-]{1,128}$",
    re.ASCII,
)
# Any ARN of Amazon Connect, in any partition: a Uri that starts so and is no instance ARN (a
# queue's, a malformed one) is refused rather than stored as an ordinary integration.
CONNECT_ARN = re.compile(r"^arn:[^:]*:connect:")
DEFAULT_INSTANCE_OBJECT_TYPE = "CTR"


def is_instance_arn(uri: str) -> bool:
    # fullmatch: `$` alone would let a trailing newline through.
    return INSTANCE_ARN.fullmatch(uri) is not None


def is_connect_arn(uri: str) -> bool:
    """Whether `uri` names something of Amazon Connect (an instance or not), in any partition."""
    return CONNECT_ARN.match(uri) is not None


@dataclass(frozen=True)
class Integration:
    domain_name: str
    uri: str
    object_type_name: str | None
    object_type_names: Mapping[str, str] | None
    # RoleArn, EventTriggerNames, Scope, FlowDefinition, WorkflowId, IsUnstructured.
    settings: Mapping[str, Any]
    instance_arn: str | None
    flow_name: str | None
    created_at: datetime
    updated_at: datetime
    # Why the integration brings nothing in, when DeleteProfileObjectType disabled it.
    disabled_reason: str | None = None

    @property
    def is_instance(self) -> bool:
        return self.instance_arn is not None

    @property
    def flow_definition(self) -> Mapping[str, Any] | None:
        found = self.settings.get("FlowDefinition")
        return found if isinstance(found, Mapping) else None


@dataclass(frozen=True)
class InstanceAssociation:
    """What `associate_instance` did: the integration now in place, and the domain the instance
    was moved away from (None when it was not associated elsewhere)."""

    integration: Integration
    previous_domain: str | None
