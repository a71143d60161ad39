"""Verifies AWS Signature Version 4 on incoming requests (header and presigned query auth).

The canonical request reproduces what botocore's `SigV4Auth` signs for a non-S3 service:

- path: the RAW request path (as sent, already percent-encoded), with dot segments and
  repeated slashes removed, percent-encoded AGAIN with `/` and `~` safe. Non-S3 services
  double-encode, so a label `arn%3Aaws%3A...%2Fname` is signed as `arn%253Aaws%253A...%252Fname`.
- query: pairs sorted by encoded key then value, each decoded to its bytes and re-encoded with
  only `-_.~` safe (botocore sends them encoded that way, so this equals its raw string, even
  for an escape that is not UTF-8).
- headers: lower-cased names, values with runs of whitespace folded to one space, repeated
  headers joined with ','. A value is signed as the bytes sent: the server decodes them as
  latin-1 (as HTTP and ASGI do), botocore signs its text as UTF-8 and sends the same UTF-8
  (`X-Custom: café` is `caf\xc3\xa9` both ways), so each value is taken back to its bytes
  before it is put in the canonical request (`_as_sent`).
- payload: hex SHA-256 of the body (botocore always signs the payload for this service).

Verification is in two steps, so that a server refuses an unsigned request, or one by an unknown
key, before it reads the body: `check_headers` (all that the request line and headers show),
then `HeaderCheck.verify_body`. `verify_request` is both at once.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import quote, unquote_to_bytes

from openprofiles.errors import InvalidSignature, MissingAuthenticationToken, UnrecognizedClient

ALGORITHM = "AWS4-HMAC-SHA256"
_AMZ_DATE = "%Y%m%dT%H%M%SZ"
_AMZ_DATE_SHAPE = re.compile(r"[0-9]{8}T[0-9]{6}Z")
_UNSIGNED = "UNSIGNED-PAYLOAD"
_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)
_PAYLOAD_MISMATCH = "The provided 'x-amz-content-sha256' header does not match what was computed."
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_MAX_PRESIGN_EXPIRES = 7 * 24 * 3600
# X-Amz-Expires: ASCII digits, a few more than the largest lifetime allowed has (so that a
# leading zero passes, and int() is never given thousands of digits).
_EXPIRES_SHAPE = re.compile(r"[0-9]{1,12}")


def verify_request(
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Mapping[str, str],
    body: bytes,
    find_secret: Callable[[str], str | None],
    now: datetime,
    max_skew_seconds: int,
    service: str = "profile",
) -> str:
    """Verify the request's SigV4 signature and return the caller's access key id.

    `headers` may be any mapping; names are compared case-insensitively and repeated names
    (as yielded by `items()`) are joined with ',' as SigV4 requires. The same as
    `check_headers(...).verify_body(body)`, for a caller that has the body already.
    """
    checked = check_headers(
        method, raw_path, raw_query, headers, find_secret, now, max_skew_seconds, service
    )
    return checked.verify_body(body)


@dataclass(slots=True)  # not frozen: that costs microseconds a request
class HeaderCheck:
    """A request whose signature has been checked as far as its headers allow: well-formed, by
    a known access key, within the clock skew. `verify_body` does the rest, once the body has
    been read: the payload hash and the signature itself."""

    access_key: str
    # The canonical request but its last line (the payload hash), and what is signed with it.
    canonical_head: str
    amz_date: str
    scope: str
    signing_key: bytes
    signature: str
    declared_payload_hash: str | None

    def verify_body(self, body: bytes) -> str:
        """Finish the verification with the request's body; the caller's access key id."""
        payload_hash = hashlib.sha256(body).hexdigest()
        declared = self.declared_payload_hash
        if declared is not None and declared != payload_hash:
            raise InvalidSignature(_PAYLOAD_MISMATCH)
        canonical = f"{self.canonical_head}\n{payload_hash}"
        # surrogateescape: a header's bytes that are not UTF-8 are signed as they were sent.
        digest = hashlib.sha256(canonical.encode("utf-8", "surrogateescape")).hexdigest()
        string_to_sign = "\n".join([ALGORITHM, self.amz_date, self.scope, digest])
        expected = hmac.new(self.signing_key, string_to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, self.signature):
            raise InvalidSignature(_MISMATCH)
        return self.access_key


def check_headers(
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Mapping[str, str],
    find_secret: Callable[[str], str | None],
    now: datetime,
    max_skew_seconds: int,
    service: str = "profile",
) -> HeaderCheck:
    """Check what the request line and headers alone show of its signature, before its body is
    read: each fault found here is refused with the error `verify_request` gives it, in the
    same order (an unsigned request, or one by an unknown key, costs no body)."""
    lowered = _lower_headers(headers)
    raw_pairs = _parse_query(raw_query)
    # The auth parameters of a presigned URL as text; a byte that is not UTF-8 cannot be one of
    # theirs, so replacing it changes no outcome (the signature covers the raw bytes).
    query = [(k.decode("utf-8", "replace"), v.decode("utf-8", "replace")) for k, v in raw_pairs]
    query_keys = {key for key, _ in query}
    presigned = "X-Amz-Algorithm" in query_keys
    if presigned:
        fields = _presigned_fields(query)
    elif "authorization" in lowered:
        fields = _header_fields(lowered["authorization"])
    else:
        raise MissingAuthenticationToken("Missing Authentication Token")

    access_key, scope_date, region, scope_service = _credential(fields["Credential"], service)
    signed_headers = fields["SignedHeaders"].split(";")
    if signed_headers != sorted(signed_headers) or any(not name for name in signed_headers):
        raise InvalidSignature("SignedHeaders must be lower-case names sorted and ';'-separated.")
    if "host" not in signed_headers:
        raise InvalidSignature("The host header must be signed.")
    for name in signed_headers:
        if name not in lowered:
            raise InvalidSignature(f"Signed header {name} is not present in the request.")

    amz_date = _request_date(fields.get("Date"), lowered)
    if amz_date[:8] != scope_date:
        raise InvalidSignature(
            f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
            f"from HTTP: '{scope_date}' != '{amz_date[:8]}', from '{amz_date}'."
        )
    signed_at = _parse_amz_date(amz_date)
    _check_time(signed_at, amz_date, now, max_skew_seconds, fields.get("Expires"))

    secret = find_secret(access_key)
    if secret is None:
        raise UnrecognizedClient("The security token included in the request is invalid.")

    declared = lowered.get("x-amz-content-sha256")
    if declared == _UNSIGNED:
        raise InvalidSignature("Unsigned payloads are not accepted by this service.")
    if declared is not None and _SHA256_HEX.fullmatch(declared) is None:
        # No body's hash (lower-case hex, as SigV4 writes it) looks like this: it cannot match.
        raise InvalidSignature(_PAYLOAD_MISMATCH)

    if _SHA256_HEX.fullmatch(fields["Signature"]) is None:
        # No HMAC-SHA256 (lower-case hex) looks like this: it cannot match. Checked here, as
        # hmac.compare_digest raises TypeError on a non-ASCII string (a 500, logged as an error).
        raise InvalidSignature(_MISMATCH)

    canonical_query = _canonical_query(
        [(k, v) for k, v in raw_pairs if not (presigned and k == b"X-Amz-Signature")]
    )
    canonical_head = "\n".join(
        [
            method.upper(),
            canonical_path(raw_path),
            canonical_query,
            "".join(f"{name}:{_fold(_as_sent(lowered[name]))}\n" for name in signed_headers),
            ";".join(signed_headers),
        ]
    )
    return HeaderCheck(
        access_key=access_key,
        canonical_head=canonical_head,
        amz_date=amz_date,
        scope=f"{scope_date}/{region}/{scope_service}/aws4_request",
        signing_key=_signing_key(secret, scope_date, region, scope_service),
        signature=fields["Signature"],
        declared_payload_hash=declared,
    )


def canonical_path(raw_path: str) -> str:
    """The SigV4 canonical URI of a raw path for a non-S3 service (double-encoded)."""
    path = raw_path.split("?", 1)[0]
    return quote(_remove_dot_segments(path), safe="/~")


def _remove_dot_segments(path: str) -> str:
    # Same normalisation as botocore.utils.remove_dot_segments: AWS drops '.' and '..'
    # segments and repeated slashes before signing.
    if not path:
        return "/"
    output: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if output:
                output.pop()
        else:
            output.append(part)
    first = "/" if path.startswith("/") else ""
    last = "/" if path.endswith("/") and output else ""
    return first + "/".join(output) + last


def _lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    lowered: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        lowered[key] = f"{lowered[key]},{value}" if key in lowered else value
    return lowered


def _parse_query(raw_query: str) -> list[tuple[bytes, bytes]]:
    # Bytes, not text: the client signed the bytes it escaped, and an escape that is not UTF-8
    # (`%FF`) decoded as text would come back re-encoded as U+FFFD's `%EF%BF%BD`, so a correctly
    # signed request would fail its signature instead of reaching the API's own answer.
    pairs = []
    for part in raw_query.split("&"):
        if part:
            key, _, value = part.partition("=")
            pairs.append((unquote_to_bytes(key), unquote_to_bytes(value)))
    return pairs


def _canonical_query(pairs: list[tuple[bytes, bytes]]) -> str:
    encoded = sorted((quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, v in pairs)
    return "&".join(f"{k}={v}" for k, v in encoded)


def _fold(value: str) -> str:
    return " ".join(value.split())


def _as_sent(value: str) -> str:
    """A header value as the text whose UTF-8 (with surrogateescape) is the bytes that were
    sent. The server has it decoded as latin-1, byte for byte; botocore sends and signs UTF-8.
    Read as latin-1 text instead, `café` was signed here as `cafÃ©` and a correctly signed
    request failed (and `à`, `\xc3\xa0`, was even folded at its `\xa0`, a space to str.split).
    A value that latin-1 cannot hold did not come from the wire: it is taken as the text it is.
    """
    if value.isascii():
        return value
    try:
        sent = value.encode("latin-1")
    except UnicodeEncodeError:
        return value
    return sent.decode("utf-8", "surrogateescape")


def _header_fields(header: str) -> dict[str, str]:
    algorithm, _, rest = header.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise InvalidSignature(f"Only {ALGORITHM} is supported as authorization algorithm.")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            raise InvalidSignature(
                "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature'."
            )
        fields[name] = value
    if not fields.keys() >= _HEADER_FIELDS:
        raise InvalidSignature(
            "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature'."
        )
    # Only these three: the header is not covered by its own signature, so any other part
    # (a pre-signed URL's `Expires` or `Date`) is the sender's word, not the signer's. Read,
    # an `Expires=604800` appended to a captured request let it be replayed for seven days
    # instead of the 15 minutes' skew (`_check_time` took it for a pre-signed URL's lifetime).
    return {name: fields[name] for name in _HEADER_FIELDS}


# The parts of an Authorization header of SigV4 (AWS IAM guide, "Authentication methods").
_HEADER_FIELDS = frozenset({"Credential", "SignedHeaders", "Signature"})


def _presigned_fields(query: list[tuple[str, str]]) -> dict[str, str]:
    values = dict(query)
    if values.get("X-Amz-Algorithm") != ALGORITHM:
        raise InvalidSignature(f"Only {ALGORITHM} is supported as X-Amz-Algorithm.")
    names = {
        "Credential": "X-Amz-Credential",
        "SignedHeaders": "X-Amz-SignedHeaders",
        "Signature": "X-Amz-Signature",
        "Date": "X-Amz-Date",
        "Expires": "X-Amz-Expires",
    }
    missing = [param for param in names.values() if param not in values]
    if missing:
        raise InvalidSignature(f"Presigned request is missing {', '.join(missing)}.")
    return {field: values[param] for field, param in names.items()}


def _credential(credential: str, service: str) -> tuple[str, str, str, str]:
    parts = credential.rsplit("/", 4)
    if len(parts) != 5 or not all(parts):
        raise InvalidSignature(
            "Credential should be scoped to a valid region, "
            "e.g. AKID/20261128/us-east-1/profile/aws4_request."
        )
    access_key, scope_date, region, scope_service, terminator = parts
    if terminator != "aws4_request":
        raise InvalidSignature(
            "Credential should be scoped with a valid terminator: 'aws4_request'."
        )
    if scope_service != service:
        raise InvalidSignature(
            f"Credential should be scoped to correct service: '{service}', not '{scope_service}'."
        )
    if len(scope_date) != 8 or not scope_date.isdigit():
        raise InvalidSignature("Credential should be scoped to a date in the form YYYYMMDD.")
    # The region is signed (it is part of the signing key) but deliberately not compared with
    # the server's `Settings.region`, unlike AWS's endpoints: a client's region is whatever its
    # SDK configuration says (often the operator's everyday AWS region), and one OpenProfiles
    # server is one region whatever a client calls it. The server's region only names its ARNs.
    return access_key, scope_date, region, scope_service


def _parse_amz_date(text: str) -> datetime:
    """An X-Amz-Date (YYYYMMDD'T'HHMMSS'Z') as an aware UTC datetime; InvalidSignature else.

    Parsed by hand: strptime was a tenth of the server's time for a SearchProfiles call."""
    if _AMZ_DATE_SHAPE.fullmatch(text) is None:
        raise InvalidSignature("X-Amz-Date must be in the form YYYYMMDD'T'HHMMSS'Z'.")
    try:
        return datetime(
            int(text[0:4]),
            int(text[4:6]),
            int(text[6:8]),
            int(text[9:11]),
            int(text[11:13]),
            int(text[13:15]),
            tzinfo=UTC,
        )
    except ValueError:
        raise InvalidSignature("X-Amz-Date must be in the form YYYYMMDD'T'HHMMSS'Z'.") from None


def _request_date(presigned_date: str | None, lowered: Mapping[str, str]) -> str:
    """The signing timestamp: X-Amz-Date (query or header), else the Date header."""
    text = presigned_date or lowered.get("x-amz-date")
    if text is not None:
        _parse_amz_date(text)
        return text
    if "date" in lowered:
        # OverflowError too: a year beyond what a datetime holds (`12345678901234567890`), or
        # one at its edge that an offset moves out of it (`31 Dec 9999 23:59:59 -0001` in UTC).
        try:
            parsed = parsedate_to_datetime(lowered["date"])
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            return parsed.astimezone(UTC).strftime(_AMZ_DATE)
        except (TypeError, ValueError, OverflowError):
            raise InvalidSignature("The Date header could not be parsed.") from None
    raise InvalidSignature(
        "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
    )


def _check_time(
    signed_at: datetime, amz_date: str, now: datetime, skew: int, expires: str | None
) -> None:
    now = now.astimezone(UTC) if now.tzinfo else now.replace(tzinfo=UTC)
    stamp = "%Y%m%dT%H%M%SZ"
    minutes = f"{skew / 60:g} min."
    if signed_at > now + timedelta(seconds=skew):
        later = (now + timedelta(seconds=skew)).strftime(stamp)
        raise InvalidSignature(
            f"Signature not yet current: {amz_date} is still later than {later} "
            f"({now.strftime(stamp)} + {minutes})"
        )
    if expires is not None:
        # Presigned URL: valid from X-Amz-Date for X-Amz-Expires seconds.
        # ASCII digits only, as AWS reads it: int() also takes "+300", " 300", "1_000" and
        # other scripts' digits ("３００"), which no SDK writes.
        if _EXPIRES_SHAPE.fullmatch(expires) is None:
            raise InvalidSignature("X-Amz-Expires must be a whole number of seconds.")
        lifetime = int(expires)
        if not 0 < lifetime <= _MAX_PRESIGN_EXPIRES:
            raise InvalidSignature("X-Amz-Expires must be between 1 second and 7 days.")
        if now > signed_at + timedelta(seconds=lifetime):
            raise InvalidSignature("Request has expired")
        return
    if signed_at < now - timedelta(seconds=skew):
        earlier = (now - timedelta(seconds=skew)).strftime(stamp)
        raise InvalidSignature(
            f"Signature expired: {amz_date} is now earlier than {earlier} "
            f"({now.strftime(stamp)} - {minutes})"
        )


# A signing key is valid for its scope's day and derived with four HMACs (a tenth of the
# verification); a client signs every request of the day with the same one. The cache holds no
# more than the credential cache already does, and a revoked key fails its lookup before this.
@functools.lru_cache(maxsize=256)
def _signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = hmac.new(f"AWS4{secret}".encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key
