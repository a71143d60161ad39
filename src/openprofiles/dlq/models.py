"""Records of the dlq package."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class DeadLetter:
    message_id: str
    domain_name: str
    object_type_name: str
    # The submitted object exactly as received (the SQS message body, spec §6.1).
    object_json: str
    reason: str
    # no_profile | missing_key | ambiguous | invalid_value | transient
    category: str
    attempts: int
    created_at: datetime
    last_attempt_at: datetime
    # Why forwarding to the domain's SQS queue failed, when it did.
    sink_error: str | None = None


@dataclass(frozen=True)
class RetryOutcome:
    succeeded: list[str]
    failed: list[str]
