"""PutProfileObject's answer for a record the pipeline rejected, once it is dead-lettered.

One place for both ways a PutProfileObject runs (alone in a thread: objects.handlers; with the
other calls of its event-loop turn: objects.coalesce), so the two cannot answer differently.

A record that fails the checks Customer Profiles makes before processing (no value for its
UNIQUE key, or for every PROFILE key: `IngestRejected.invalid_request`) is a request error:
BadRequestException, as AWS answers it, saying what is missing. Any other rejection is found
only while the record is processed, which AWS does after answering, so the call succeeds with
the id of the record's dead letter as its ProfileObjectUniqueKey (spec §0, §6.1). Either way the
record is kept in the dead-letter queue, as BatchPutProfileObject keeps its rejected items, so
that once the object type is fixed `dlq retry` ingests it and nothing sent is lost; the error
says so, with the letter's id.
"""

from __future__ import annotations

from typing import Any

from openprofiles.errors import BadRequest
from openprofiles.ingest.pipeline import IngestRejected


def rejected_answer(rejection: IngestRejected, letter_id: str) -> dict[str, Any]:
    """The answer to the PutProfileObject whose record was rejected with `rejection` and kept
    as dead letter `letter_id`; BadRequest for a request error."""
    if rejection.invalid_request:
        raise BadRequest(
            f"{rejection.reason} The record is kept in the dead-letter queue as {letter_id}."
        )
    return {"ProfileObjectUniqueKey": letter_id}
