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


class PayloadTooLarge(ServiceError):
    """The request body exceeds the size the server accepts."""

    code = "RequestEntityTooLargeException"
    status = 413


def render_error(error: ServiceError, request_id: str) -> tuple[int, dict[str, str], bytes]:
    """Return (status, headers, body) of the AWS-format error response for `error`."""
    headers = {
        "Content-Type": JSON_CONTENT_TYPE,
        "x-amzn-ErrorType": error.code,
        "x-amzn-RequestId": request_id,
    }
    body = json.dumps({"Message": error.message}, separators=(",", ":")).encode()
    return error.status, headers, body
