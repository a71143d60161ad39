"""Records of the domains package."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

# Settings a caller sets on CreateDomain/UpdateDomain, kept as the API names them.
CONFIG_MEMBERS = (
    "DefaultExpirationDays",
    "DefaultEncryptionKey",
    "DeadLetterQueueUrl",
    "Matching",
    "RuleBasedMatching",
    "DataStore",
)


@dataclass(frozen=True)
class DomainRecord:
    name: str
    key_id: str
    wrapped_key: bytes
    config: dict[str, Any]
    created_at: datetime
    updated_at: datetime

    @property
    def default_expiration_days(self) -> int:
        return int(self.config["DefaultExpirationDays"])

    @property
    def dead_letter_queue_url(self) -> str | None:
        return self.config.get("DeadLetterQueueUrl") or None


@dataclass(frozen=True)
class DomainStats:
    profile_count: int
    metering_profile_count: int
    object_count: int
    total_size: int
