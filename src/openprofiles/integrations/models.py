"""Records of the integrations package."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# arn:aws:connect:{region}:{account}:instance/{id} (spec §3.2).
INSTANCE_ARN = re.compile(
    r"^arn:aws[a-z-]*:connect:[a-z0-9-]+:\d{12}:instance/[A-Za-z0-9-]{1,128}$"
)
DEFAULT_INSTANCE_OBJECT_TYPE = "CTR"


def is_instance_arn(uri: str) -> bool:
    # fullmatch: `$` alone would let a trailing newline through.
    return INSTANCE_ARN.fullmatch(uri) is not None


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
