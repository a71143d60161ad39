"""Records of the dlq package."""

from __future__ import annotations

from dataclasses import dataclass, field
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
    # Set when the letter holds no record a retry can ingest (a flow item that could not be read
    # as records, say): why, and what to do instead. `retry` leaves such a letter alone.
    not_retryable: str | None = None
    # Where the record came from, when its reason names it first ("Flow crm" in "Flow crm: why",
    # dlq.service.origin_reason): a retry that fails again names it first in the new reason too.
    origin: str | None = None


@dataclass(frozen=True)
class RetryOutcome:
    """What `dlq.service.retry` did. `succeeded` holds every message removed from the store;
    `superseded` those of them older than what is stored: contact records older than, or the
    same as, the version of their contact already applied (spec §3.1), and other records whose
    object (same type and UNIQUE key) was written after the letter's last attempt; removed
    without changing anything.
    `failed` holds every message still in the store; `not_retried` those of them that were not
    tried, being no record a retry can ingest (message id → why, and what to do instead)."""

    succeeded: list[str]
    failed: list[str]
    superseded: list[str] = field(default_factory=list)
    not_retried: dict[str, str] = field(default_factory=dict)
