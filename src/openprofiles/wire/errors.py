"""Renders a ServiceError as AWS does for rest-json, plus the errors only the wire layer raises.

The response carries the status of the error class, the exception name in `x-amzn-ErrorType`
(which botocore reads as `Error.Code`) and `{"Message": ...}` as body (botocore reads
`Message` or `message` as `Error.Message`).
"""

from __future__ import annotations

import json

from openprofiles.errors import ServiceError

JSON_CONTENT_TYPE = "application/json"


class UnknownOperation(ServiceError):
    """No operation of the model matches the request's method and path."""

    code = "UnknownOperationException"
    status = 404


class MethodNotAllowed(ServiceError):
    """The path is one of the model's, but not for the request's method.

    AWS's Smithy servers answer 405 here (with no body); the error name and the message,
    which lists what the path accepts, are ours, and `Allow` is what HTTP asks of a 405.
    """

    code = "MethodNotAllowedException"
    status = 405

    def __init__(self, method: str, raw_path: str, accepted: list[tuple[str, str]]) -> None:
        listed = ", ".join(f"{verb} ({operation})" for verb, operation in accepted)
        super().__init__(f"{method} is not allowed on {raw_path}; it accepts {listed}.")
        self.allowed = tuple(dict.fromkeys(verb for verb, _ in accepted))


class PayloadTooLarge(ServiceError):
    """The request body exceeds the size the server accepts."""

    code = "RequestEntityTooLargeException"
    status = 413

    @classmethod
    def over(cls, limit: int) -> PayloadTooLarge:
        return cls(f"The request body exceeds {limit} bytes.")


def render_error(error: ServiceError, request_id: str) -> tuple[int, dict[str, str], bytes]:
    """Return (status, headers, body) of the AWS-format error response for `error`."""
    headers = {
        "Content-Type": JSON_CONTENT_TYPE,
        "x-amzn-ErrorType": error.code,
        "x-amzn-RequestId": request_id,
    }
    if isinstance(error, MethodNotAllowed):
        headers["Allow"] = ", ".join(error.allowed)
    body = json.dumps({"Message": error.caller_message}, separators=(",", ":")).encode()
    return error.status, headers, body
