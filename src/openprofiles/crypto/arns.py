"""Identifiers of keys: ARN formatting and recognition for local and AWS KMS keys.

Local keys look like KMS keys so a key reference is one string everywhere (DefaultEncryptionKey,
the CLI, the UI): `arn:openprofiles:kms:{region}:{account}:key/{uuid}`, or `alias/NAME`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ALIAS_PREFIX = "alias/"
LOCAL_PARTITION = "openprofiles"

# Both ARN patterns are used with fullmatch: with match, a final `$` also matches before a
# trailing newline.
_LOCAL_KEY_ARN = re.compile(
    r"^arn:openprofiles:kms:(?P<region>[a-z0-9-]*):(?P<account>[0-9]*):key/(?P<key_id>[0-9a-f-]{36})$"
)
# aws, aws-cn, aws-us-gov, aws-iso, ...: every AWS partition is served by KMS.
_AWS_KMS_ARN = re.compile(r"^arn:aws(-[a-z0-9-]+)?:kms:[a-z0-9-]+:[0-9]{12}:(key|alias)/.+$")


@dataclass(frozen=True)
class LocalKeyArn:
    region: str
    account_id: str
    key_id: str


def local_key_arn(region: str, account_id: str, key_id: str) -> str:
    return f"arn:{LOCAL_PARTITION}:kms:{region}:{account_id}:key/{key_id}"


def parse_local_key_arn(value: str) -> LocalKeyArn | None:
    match = _LOCAL_KEY_ARN.fullmatch(value)
    if match is None:
        return None
    return LocalKeyArn(match["region"], match["account"], match["key_id"])


def is_local_key_arn(value: str) -> bool:
    return value.startswith(f"arn:{LOCAL_PARTITION}:kms:")


def is_aws_kms_arn(value: str) -> bool:
    return _AWS_KMS_ARN.fullmatch(value) is not None


def alias_name(value: str) -> str | None:
    """NAME for `alias/NAME`, else None."""
    if value.startswith(ALIAS_PREFIX) and len(value) > len(ALIAS_PREFIX):
        return value[len(ALIAS_PREFIX) :]
    return None
