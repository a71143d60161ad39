"""The contact-record feed over HTTP: `POST /contact-records` and `POST /contact-events`.

Both are signed with SigV4 exactly like the API (signing name `profile`) and verified by the
app's own `authenticate`; both are machine feeds from the contact centre, so they require an
admin credential. A credential limited to some domains (auth.scope) feeds only those: a record
that would go elsewhere is rejected with the reason (an event: AccessDeniedException). Errors
use the AWS error format of the API; a body over the feeds' own size limit (`MAX_BODY_BYTES`,
a batch of large records) is answered 413 as soon as the limit is passed, without reading the
rest.

* `/contact-records`: body one record, a JSON array of records, or JSON lines (UTF-8, a byte
  order mark before it ignored). Answers
  `{"Accepted": n, "Rejected": [{"ContactId": ..., "Message": ..., "Index": ...}]}` (`Index`:
  the record's 0-based place in the body, `outcome_json`); a rejected record does
  not stop the rest of the batch, and is in a dead-letter store with its reason (so is an
  element of the array, or a line of JSON lines, that is not a JSON object). A body that is
  none of the three — not JSON at all, a truncated record or array, a JSON value that is not an
  object (`null`, `42`) — is a BadRequestException saying where parsing stopped, and nothing of
  it is applied or kept (contacts.records.split_records). So is an empty body (or one of
  whitespace only), which holds no record to answer for; a body of more than
  `MAX_BODY_RECORDS` records is refused whole (413), however small they are.
  On PostgreSQL a body is applied `store.chunks.PG_RECORDS_PER_TRANSACTION` records a transaction
  (store.chunks says why), every one committed before the answer. A record kept waiting for
  the contact it continues, that a later transaction of the body sent on, is answered as what
  it became, not as held (`process_batch`).
* `/contact-events`: one contact-start event; answers `{"ContactId", "DomainName", "ProfileId",
  "CreatedProfile"}` (plus `"Message"` when the contact could not be linked).
"""

from __future__ import annotations

import copy
import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from openprofiles.auth.authenticator import Authenticator
from openprofiles.auth.scope import DomainScope
from openprofiles.contacts.models import BatchOutcome, BodyInvalid, Rejection
from openprofiles.contacts.records import Item, split_records
from openprofiles.contacts.service import (
    add_outcome,
    apply_contact_event,
    claim_woken,
    ingest_contact_items,
)
from openprofiles.context import Principal, Services
from openprofiles.errors import AccessDenied, BadRequest, InternalServer, ServiceError
from openprofiles.ingest.bulk import DEFAULT_BATCH_SIZE
from openprofiles.json_text import JsonTextError, load_json
from openprofiles.metrics.events import count_contact_records, count_feed_request
from openprofiles.store.chunks import transaction_chunks
from openprofiles.store.conflicts import retrying, unavailable
from openprofiles.wire.dispatch import ClientGone, check_before_body, read_body
from openprofiles.wire.errors import PayloadTooLarge, render_error

# A large contact record with its separator in the body: Amazon Connect allows a contact 32 KB
# of user-defined attributes, the bulk of a large record, and this as much again for the rest
# (agent, queue, endpoints, references, segment attributes; a plain record is 2-4 KB).
LARGE_RECORD_BYTES = 64 * 1024
# A body holds as many records as one transaction of the file loaders (DEFAULT_BATCH_SIZE,
# 500), each of them large: 31.25 MiB, about the API's
# largest request (BatchPutProfileObject's, wire.body_size), so a feed costs no more memory than
# the API. A single record at the pipeline's own limit (ingest.MAX_OBJECT_CHARS) fits
# many times over.
MAX_BODY_BYTES = DEFAULT_BATCH_SIZE * LARGE_RECORD_BYTES
# The most records a body may hold, whatever their size: 20 of the file loaders' batches. Small
# records fit MAX_BODY_BYTES by the tens of thousands, and a body of 40,000 held the SQLite
# writer (every other write of the server) for half a minute.
MAX_BODY_RECORDS = 20 * DEFAULT_BATCH_SIZE

# Where a record rejected by the feed came from, first in its dead letter's reason. It is also
# what makes a resent record one letter (dlq.sinks.dead_letter_in): a feed that sends a batch
# again because its answer was lost (a killed server, a timeout) counts another attempt on the
# letters the first sending made, and sends no second SQS message, as a file read again does.
FEED_ORIGIN = "POST /contact-records"

logger = logging.getLogger(__name__)


def process_body(
    services: Services,
    body: str,
    committed: BatchOutcome | None = None,
    scope: DomainScope | None = None,
) -> BatchOutcome:
    """Apply every record of a body (`process_batch`, which fills in `committed`); BadRequest,
    with nothing applied, for a body that is neither a record, an array of records nor JSON
    lines, or is empty; 413 for one of more than MAX_BODY_RECORDS records."""
    if not body.strip():
        raise BadRequest(
            "The body is empty: send a contact record, a JSON array of records or JSON lines."
        )
    try:
        items = split_records(body)
    except BodyInvalid as exc:
        raise BadRequest(f"The body is {exc.what}.") from None
    if len(items) > MAX_BODY_RECORDS:
        raise PayloadTooLarge(
            f"The body holds {len(items)} records; a body may hold at most {MAX_BODY_RECORDS}. "
            "Send them in several bodies."
        )
    return process_batch(services, items, [FEED_ORIGIN] * len(items), committed, scope=scope)


def process_batch(
    services: Services,
    items: list[Item],
    origins: list[str | None] | None = None,
    committed: BatchOutcome | None = None,
    *,
    scope: DomainScope | None = None,
) -> BatchOutcome:
    """Apply a batch of records (each applied whole or not at all by the pipeline): in one write
    transaction on SQLite, PG_RECORDS_PER_TRANSACTION records a transaction on PostgreSQL
    (store.chunks), each committed before the next; `origins` says where each came from, for its
    dead letter.

    An error part-way says how many records were applied before it: sending the batch again
    is safe, as a record already applied is a repeat, which changes nothing (contacts.service).
    What the committed transactions did is summed into `committed` (the outcome returned, when
    given) as each commits, so a caller stopped by that error still knows it (the metrics).
    A record that continues a contact of a later transaction of the batch waits for it, and
    that transaction sends it on: it is reported as what it became then, accepted or rejected
    (contacts.service `claim_woken`), not as held, since it was, before the answer; the batch
    is not reordered to avoid it (a file's and a stream's positions resume in its order).
    `scope`: the sender's domain scope (auth.scope; contacts.service `ingest_contact_items`).
    """
    total = BatchOutcome() if committed is None else committed
    start = 0
    try:
        for chunk in transaction_chunks(items, is_sqlite=services.database.is_sqlite):
            chunk_origins = origins[start : start + len(chunk)] if origins else None

            def attempt(
                chunk: Sequence[Item] = chunk, chunk_origins: Any = chunk_origins
            ) -> BatchOutcome:
                with services.write() as tx:
                    return ingest_contact_items(tx, chunk, origins=chunk_origins, scope=scope)

            try:
                # A batch rolled back by a race with another process (PostgreSQL) runs again.
                more = retrying(attempt)
            except ServiceError as exc:
                if not start:
                    raise
                raise _after_applied(exc, start, len(items)) from exc
            if start:
                # Each rejected record's place in the chunk, made its place in the batch.
                more.rejected = [
                    r if r.index is None else replace(r, index=r.index + start)
                    for r in more.rejected
                ]
            start += len(chunk)
            # The records it woke (kept waiting for its contacts) are not the batch's own.
            add_outcome(total, replace(more, woken=None))
            if more.woken is not None:
                total.woken = total.woken or BatchOutcome()
                add_outcome(total.woken, more.woken)
                total.woken.sent.update(more.woken.sent)
    finally:
        # Also when an error stopped the batch part-way: `committed` then says what the
        # transactions before it made of the records they kept waiting.
        claim_woken(total)
    return total


def _after_applied(error: ServiceError, applied: int, count: int) -> ServiceError:
    """A copy of `error` saying that the first `applied` records of the batch were applied
    before it."""
    said = copy.copy(error)
    note = (
        f" The first {applied} of the batch's {count} records were applied before it; sending "
        "the batch again is safe: a record already applied is a repeat, which changes nothing."
    )
    said.message += note
    said.caller_message += note
    said.args = (said.message,)
    return said


def outcome_json(outcome: BatchOutcome) -> dict[str, Any]:
    """The answer to a body: each rejected record with its ContactId (null when it cannot be
    read), its reason, and its place in the body (`Index`, 0-based: an array's index, or the
    count of records before it in JSON lines), which tells even records without a readable
    ContactId apart."""
    return {
        "Accepted": outcome.accepted,
        "Rejected": [_rejected_json(r) for r in outcome.rejected],
    }


def _rejected_json(rejection: Rejection) -> dict[str, Any]:
    out: dict[str, Any] = {"ContactId": rejection.contact_id, "Message": rejection.message}
    if rejection.index is not None:
        out["Index"] = rejection.index
    return out


class _Unanswered(Response):
    """No answer: the client left before its body's end (wire.dispatch ClientGone), so the
    request was never run, and is not counted."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        return


UNANSWERED = _Unanswered()


def contact_routes(services: Services, authenticate: Authenticator) -> list[Route]:
    async def signed(request: Request) -> tuple[Principal, bytes]:
        raw_path = request.scope.get("raw_path") or request.url.path.encode()
        headers = {k.lower(): v for k, v in request.headers.items()}
        # Refused before any of the body is read when the headers show it unauthenticated,
        # then read no further than the limit: an unsigned body costs the server no memory.
        checked = await check_before_body(
            authenticate.check_headers,
            request.method,
            raw_path.decode("latin-1"),
            request.scope.get("query_string", b"").decode("latin-1"),
            headers,
            MAX_BODY_BYTES,
        )
        body, too_large = await read_body(request.receive, MAX_BODY_BYTES, headers)
        if too_large:
            raise PayloadTooLarge.over(MAX_BODY_BYTES)
        principal = await run_in_threadpool(checked.principal, body)
        if principal.role != "admin":
            raise AccessDenied(
                f"The role {principal.role} is not allowed to send contact records or events."
            )
        return principal, body

    def respond(status: int, payload: dict[str, Any]) -> Response:
        return Response(
            json.dumps(payload, ensure_ascii=False),
            status_code=status,
            media_type="application/json",
        )

    def failed(error: ServiceError, request_id: str | None = None) -> Response:
        status, headers, body = render_error(error, request_id or str(uuid.uuid4()))
        return Response(body, status_code=status, headers=headers)

    def internal_error(feed: str, error: Exception) -> Response:
        """An AWS-format 500 for what no ServiceError describes (the database out of reach,
        say), as the API answers it, instead of the framework's plain-text 500."""
        request_id = str(uuid.uuid4())
        # Never the body or the error's message: they carry personal data.
        logger.error(
            "unhandled %s in %s (request id %s)",
            type(error).__name__,
            feed,
            request_id,
            exc_info=True,
        )
        if (busy := unavailable(error)) is not None:
            return failed(busy, request_id)
        return failed(
            InternalServer(f"An internal error occurred; request id {request_id}"), request_id
        )

    async def contact_records(request: Request) -> Response:
        response = await contact_batch(request)
        if response is not UNANSWERED:
            count_feed_request("contact-records", response.status_code)
        return response

    async def contact_batch(request: Request) -> Response:
        # What the body's committed transactions did: all of it when answered 200, the part
        # before the error when one stopped it part-way (PostgreSQL commits a body in several).
        # Those records were taken in whatever the answer, so they are counted either way.
        committed = BatchOutcome()
        try:
            principal, body = await signed(request)
            # A byte order mark (as Windows tools write one) is not part of the first record,
            # as in a file of contact records (openprofiles ingest contact-records).
            text = body.decode("utf-8-sig")
            outcome = await run_in_threadpool(
                process_body, services, text, committed, principal.scope
            )
        except ClientGone:
            return UNANSWERED
        except UnicodeDecodeError:
            return failed(BadRequest("The body must be UTF-8 JSON."))
        except ServiceError as exc:
            return failed(exc)
        except Exception as exc:
            return internal_error("POST /contact-records", exc)
        finally:
            count_contact_records(accepted=committed.accepted, rejected=len(committed.rejected))
        return respond(200, outcome_json(outcome))

    async def contact_events(request: Request) -> Response:
        response = await contact_event(request)
        if response is not UNANSWERED:
            count_feed_request("contact-events", response.status_code)
        return response

    async def contact_event(request: Request) -> Response:
        try:
            principal, body = await signed(request)
            try:
                # Strictly, as every body is (no NaN, no lone surrogates, bounded depth).
                # A byte order mark before it is ignored, as /contact-records ignores one.
                event = load_json(body.decode("utf-8-sig"), "The contact event")
            except UnicodeDecodeError:
                raise BadRequest("The body must be UTF-8 JSON.") from None
            except JsonTextError as exc:
                raise BadRequest(exc.message) from None

            def link() -> dict[str, Any]:
                with services.write() as tx:
                    done = apply_contact_event(tx, event, scope=principal.scope)
                out: dict[str, Any] = {
                    "ContactId": done.contact_id,
                    "DomainName": done.domain_name,
                    "ProfileId": done.profile_id,
                    "CreatedProfile": done.created_profile,
                }
                if done.reason:
                    out["Message"] = done.reason
                return out

            return respond(200, await run_in_threadpool(retrying, link))
        except ClientGone:
            return UNANSWERED
        except ServiceError as exc:
            return failed(exc)
        except Exception as exc:
            return internal_error("POST /contact-events", exc)

    return [
        Route("/contact-records", contact_records, methods=["POST"]),
        Route("/contact-events", contact_events, methods=["POST"]),
    ]
