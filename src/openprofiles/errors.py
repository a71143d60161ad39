"""The service's error vocabulary.

Every error a caller can see is one of these. Each carries the AWS exception name and HTTP status
the wire layer renders (`x-amzn-ErrorType`, body `{"Message": ...}`), so services raise them
without knowing anything about HTTP.
"""

from __future__ import annotations

import json
from typing import Any

# The most of a value an error message quotes: enough to recognise it, never a whole record
# (a message is shown in listings and sent on as an SQS attribute).
SHOWN_VALUE_CHARS = 80


def shown_value(value: Any) -> str:
    """A value as an error message quotes it: JSON, cut short."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= SHOWN_VALUE_CHARS else text[: SHOWN_VALUE_CHARS - 3] + "..."


class ServiceError(Exception):
    """Base of every error rendered to a caller in the AWS error format."""

    code = "InternalServerException"
    status = 500

    def __init__(self, message: str, *, caller_message: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        # What the API answers (wire.errors.render_error), when `message` holds what only the
        # server's operator may read (a file path, a KMS endpoint, a command to run): the CLI
        # and the logs show `message`.
        self.caller_message = message if caller_message is None else caller_message


class BadRequest(ServiceError):
    code = "BadRequestException"
    status = 400


class NotFound(ServiceError):
    code = "ResourceNotFoundException"
    status = 404


class AccessDenied(ServiceError):
    code = "AccessDeniedException"
    status = 403


class Throttling(ServiceError):
    code = "ThrottlingException"
    status = 429


class InternalServer(ServiceError):
    code = "InternalServerException"
    status = 500


class ServiceUnavailable(InternalServer):
    """The server could not do the work now (e.g. the database: a lock held too long by another
    session, its lock table full): what it was doing is undone, and sending the request again
    later may succeed. A 503, which the AWS SDKs retry by themselves. An InternalServer, so that
    what takes those for a passing failure (a connector that polls again, a page that says to
    try later) takes this one alike."""

    code = "ServiceUnavailableException"
    status = 503


class NotImplementedOperation(ServiceError):
    """An operation of the model that OpenProfiles does not implement yet."""

    code = "NotImplementedException"
    status = 501

    def __init__(self, operation: str) -> None:
        super().__init__(f"OpenProfiles does not implement the operation {operation} yet.")


class UnrecognizedClient(ServiceError):
    """The access key id is not one this server issued."""

    code = "UnrecognizedClientException"
    status = 403


class InvalidSignature(ServiceError):
    """The SigV4 signature is malformed, does not match, or is too old."""

    code = "InvalidSignatureException"
    status = 403


class MissingAuthenticationToken(ServiceError):
    """The request carries no SigV4 Authorization header at all."""

    code = "MissingAuthenticationTokenException"
    status = 403
