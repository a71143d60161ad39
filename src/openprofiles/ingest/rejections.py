"""Records the pipeline rejected, kept in the domain's dead-letter queue together.

One transaction, after the one that tried to apply them (nothing of them was written), so their
SQS sends go in one batch and an unreachable queue costs its timeouts once. Shared by
PutProfileObject (one record, or a turn's worth: objects.coalesce), BatchPutProfileObject and
the file loader (ingest.bulk, within its batch's transaction), which also says where in its file
each record was (`Rejected.origin`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from openprofiles.context import RequestContext, Tx
from openprofiles.dlq.sinks import dead_letter_in
from openprofiles.ingest.pipeline import IngestRejected


class Rejected(NamedTuple):
    """A rejected record: its submitted text and why; where it came from, when that is known
    (the letter's origin, dlq.service), and why a retry cannot ingest it, when it cannot."""

    raw: str
    rejection: IngestRejected
    origin: str | None = None
    not_retryable: str | None = None


def dead_letter_rejected(
    ctx: RequestContext,
    domain_name: str,
    type_name: str,
    rejected: Sequence[tuple[str, IngestRejected]],
) -> list[str]:
    """Keep rejected records (submitted text, why) in the dead-letter queue, in a transaction
    of their own; their letters' ids, in the same order."""
    with ctx.write() as tx:
        return dead_letter_all(tx, domain_name, type_name, rejected)


def dead_letter_all(
    tx: Tx,
    domain_name: str,
    type_name: str,
    rejected: Sequence[tuple[str, IngestRejected] | Rejected],
) -> list[str]:
    """Keep rejected records ((submitted text, why), or `Rejected`) in the dead-letter queue
    within `tx` (a file load keeps them in the batch's transaction); their letters' ids, in the
    same order."""
    return [
        dead_letter_in(
            tx,
            domain_name=domain_name,
            object_type_name=type_name,
            object_json=one.raw,
            reason=one.rejection.reason,
            category=one.rejection.category,
            not_retryable=one.not_retryable,
            origin=one.origin,
        ).message_id
        for one in (Rejected(*item) for item in rejected)
    ]
