"""Signing parts no client writes are refused with the AWS error for them (403), never a 500,
on every way in (the API, the contact feeds) and both databases: a Date header whose year a
datetime cannot hold, an access key id that cannot be one (a NUL, which PostgreSQL refuses in
text), an X-Amz-Expires that is not ASCII digits. And a header botocore signs with a value
outside ASCII is verified as sent."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

PATHS = [("GET", "/domains"), ("POST", "/contact-records"), ("POST", "/contact-events")]

# Years beyond a datetime's: one past 9999 once in UTC, and one parsedate cannot make a date of.
UNREADABLE_DATES = [
    "Fri, 31 Dec 9999 23:59:59 -0001",
    "Wed, 02 Dec 12345678901234567890 10:00:00 GMT",
    "Fri, 31 Dec 9999 23:59:59 -2359",
]


def _today() -> str:
    return datetime.now(UTC).strftime("%Y%m%d")


@pytest.mark.parametrize("date", UNREADABLE_DATES)
@pytest.mark.parametrize(("method", "path"), PATHS)
def test_a_date_header_out_of_a_datetimes_range_is_refused(
    live_server, method: str, path: str, date: str
) -> None:
    authorization = (
        f"AWS4-HMAC-SHA256 Credential={live_server.admin_key[0]}/{_today()}/us-east-1/profile/"
        "aws4_request, SignedHeaders=host, Signature=00"
    )
    response = httpx.request(
        method,
        live_server.url + path,
        headers={"Authorization": authorization, "Date": date},
        content=b"{}" if method == "POST" else None,
    )
    assert response.status_code == 403, response.text
    assert response.headers["x-amzn-ErrorType"].startswith("InvalidSignatureException")
    assert "The Date header could not be parsed." in response.text


def _presigned(credential: str, expires: str = "300") -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return (
        "X-Amz-Algorithm=AWS4-HMAC-SHA256"
        f"&X-Amz-Credential={credential}%2F{stamp[:8]}%2Fus-east-1%2Fprofile%2Faws4_request"
        f"&X-Amz-Date={stamp}&X-Amz-Expires={expires}&X-Amz-SignedHeaders=host"
        f"&X-Amz-Signature={'0' * 64}"
    )


@pytest.mark.parametrize("credential", ["AK%00X", "OPABCDEFGHIJ%00KLMNOPQ", "OP%C3%A9" + "A" * 16])
@pytest.mark.parametrize(("method", "path"), PATHS)
def test_an_access_key_id_that_cannot_be_one_is_unknown(
    live_server, method: str, path: str, credential: str
) -> None:
    response = httpx.request(
        method,
        f"{live_server.url}{path}?{_presigned(credential)}",
        content=b"{}" if method == "POST" else None,
    )
    assert response.status_code == 403, response.text
    assert response.headers["x-amzn-ErrorType"].startswith("UnrecognizedClientException")


@pytest.mark.parametrize("expires", ["%2B300", "1_000", "%20300", "%EF%BC%93%EF%BC%90%EF%BC%90"])
def test_x_amz_expires_takes_ascii_digits_only(live_server, expires: str) -> None:
    query = _presigned(live_server.admin_key[0], expires)
    response = httpx.get(f"{live_server.url}/domains?{query}")
    assert response.status_code == 403, response.text
    assert "X-Amz-Expires must be a whole number of seconds." in response.text


@pytest.mark.parametrize("value", ["café", "日本語", "à la carte", "plain  ascii"])
def test_a_header_outside_ascii_is_verified_on_the_bytes_sent(live_server, value: str) -> None:
    # botocore signs the value's text as UTF-8 and sends it as UTF-8; the server reads the bytes
    # as latin-1 (HTTP's and ASGI's rule), so they must be signed as those bytes, not that text.
    client = live_server.client()

    def add_header(request, **_) -> None:
        request.headers["X-Custom"] = value

    client.meta.events.register("before-sign.customer-profiles.*", add_header)
    response = client.list_domains()
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
