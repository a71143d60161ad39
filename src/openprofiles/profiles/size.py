"""The limit on a profile's size (spec "Service quotas": 250 KB max object/profile size).

A profile's size is the UTF-8 length of the profile as SearchProfiles/BatchGetProfile return it
(`{"ProfileId": ..., <its fields>}`, without FoundByItems), as compact JSON (no whitespace,
non-ASCII characters as themselves): what the customer's data weighs, whatever the server keeps
beside it (who set each field), plus the JSON list of the fields a person cleared with UpdateProfile
"" (`ProfileRecord.cleared_paths`): they are kept, without a value, so that ingestion does not fill
them again, and without counting them each UpdateProfile clearing other names could grow the stored
record without bound. Every new write of a profile's fields is held to it: CreateProfile,
UpdateProfile, MergeProfiles (the merged result), and ingestion, which rejects a record that would
take its profile over the limit (`openprofiles.ingest.size`). The undo of a merge may make a profile
as large as it was before the merge, or keep it as large as it is, over the limit if either is (a
copy stored before there was a limit: refusing it would leave the customer's data merged); no larger
(`identity.service`). AddProfileKey is not held to it: a profile's keys are not part of it as
SearchProfiles returns it (AWS documents no limit on them, and a long-time customer's contacts each
add one, `_ctrContactId`). A profile stored over the limit before there was one may still be written
if the write does not grow it (`profiles.service._seal`), so that it can be cut down.

Measuring is kept off the hot path by two bounds cheaper than encoding the profile: the sealed
blob a write makes anyway holds the fields' JSON (and more), so its length bounds the size
(`check_sealed`); and what applying values can add is at most the length of their own JSON
(`growth_bound`). The exact size is computed only when a bound passes the limit.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from openprofiles import json_codec
from openprofiles.errors import BadRequest
from openprofiles.profiles.models import ProfileRecord

# 250 KB, the model's limit on an object's text (`Object`, 256,000 characters) in bytes.
MAX_PROFILE_BYTES = 250 * 1024
# What the AWS shape adds to the fields' JSON beside the id's own JSON: the member's name and
# the separator after it (the braces are the fields' own).
_WIRE_FRAME = len('"ProfileId":,')


# ASCII-escaped compact JSON; one encoder built once, as on the ingestion hot path building
# one per call costs as much as the encoding.
_ASCII_JSON = json.JSONEncoder(separators=(",", ":"), check_circular=False)


class ProfileTooLarge(BadRequest):
    """A write would take a profile over `MAX_PROFILE_BYTES`."""

    def __init__(self, size: int) -> None:
        super().__init__(
            f"The profile would be {size} bytes, over the limit of {MAX_PROFILE_BYTES} bytes "
            "(250 KB) on a profile's size (the profile as SearchProfiles and BatchGetProfile "
            "return it, its ProfileId and fields, as UTF-8 JSON, and the names of fields "
            "cleared with UpdateProfile, which it keeps so that ingestion does not fill them "
            "again). Remove or shorten fields or Attributes."
        )
        self.size = size


def profile_size(record: ProfileRecord) -> int:
    """The profile's size, exactly (module docstring): its fields and what it keeps of the
    fields cleared. Encoded as a sealed payload is
    (json_codec), so that the sealed blob's length bounds it whatever the encoder writes
    (`size_bound`); a profile's fields are text, which it writes as json.dumps does."""
    shaped = {"ProfileId": record.profile_id, **record.fields}
    size = len(json_codec.dumps_bytes(shaped))
    # The sealed payload lists these among its manual paths, in the same encoding: the blob's
    # length still bounds the size.
    cleared = record.cleared_paths()
    return size + len(json_codec.dumps_bytes(cleared)) if cleared else size


def size_bound(record: ProfileRecord, sealed_length: int) -> int:
    """An upper bound of the profile's size, given the length of its sealed blob: the blob
    holds its fields' JSON (`ProfileRecord.sealed_payload`, sealed as compact UTF-8 JSON by
    `DomainCipher.seal_record`) plus the payload's other members and the cipher's overhead.
    The id is measured as ASCII-escaped JSON, never shorter than its UTF-8 form."""
    return sealed_length + len(_ASCII_JSON.encode(record.profile_id)) + _WIRE_FRAME


def growth_bound(values: Mapping[str, Any]) -> int:
    """An upper bound of what writing `values` (field -> value; a structured field's value maps
    its parts) into a profile can add to its size: each written path costs its name, its
    value and a separator, all in the values' JSON (a separator per member or a brace), which
    is escaped to ASCII so that its length in characters is at least the UTF-8 length of any
    non-ASCII text. A value replaced costs no more than the new value."""
    return len(_ASCII_JSON.encode(values))


def check_size(record: ProfileRecord) -> None:
    """ProfileTooLarge if the profile is over the limit."""
    size = profile_size(record)
    if size > MAX_PROFILE_BYTES:
        raise ProfileTooLarge(size)


def check_sealed(record: ProfileRecord, sealed: bytes) -> None:
    """`check_size`, measured only when the sealed blob about to be written says it may be
    over the limit (`size_bound`)."""
    if size_bound(record, len(sealed)) > MAX_PROFILE_BYTES:
        check_size(record)
