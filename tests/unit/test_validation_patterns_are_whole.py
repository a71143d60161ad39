"""Validation patterns match the whole value: with `re.match`, a pattern's final `$` also matches
before a trailing newline, which let "carol\\n" be created as a web user nobody could sign in as,
and a newline end a field's Source, a field or key name, a key alias or a KMS key ARN."""

from __future__ import annotations

import pytest

from openprofiles.crypto.arns import is_aws_kms_arn, parse_local_key_arn
from openprofiles.crypto.keyring import normalise_alias
from openprofiles.errors import BadRequest
from openprofiles.object_types.validation import validate_definition
from openprofiles.users.service import check_username


def test_a_username_ending_in_a_newline_is_refused() -> None:
    assert check_username("carol") is None
    assert check_username("carol\n") is not None
    assert check_username("\ncarol") is not None


def _definition(field: str = "Email", source: str = "_source.Email", key: str = "email") -> dict:
    return {
        "Fields": {field: {"Source": source, "Target": "_profile.EmailAddress"}},
        "Keys": {key: [{"StandardIdentifiers": ["PROFILE", "UNIQUE"], "FieldNames": [field]}]},
    }


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"source": "_source.Email\n"}, "Source"),
        ({"field": "Email\n"}, "Field name"),
        ({"key": "email\n"}, "Key name"),
    ],
)
def test_an_object_types_names_and_sources_ending_in_a_newline_are_refused(
    change: dict[str, str], expected: str
) -> None:
    validate_definition(_definition(), existing_keys={})
    with pytest.raises(BadRequest, match=expected):
        validate_definition(_definition(**change), existing_keys={})


def test_a_key_alias_ending_in_a_newline_is_refused() -> None:
    assert normalise_alias("alias/care-key") == "care-key"
    with pytest.raises(ValueError, match="is not valid"):
        normalise_alias("care-key\n")


def test_a_kms_key_arn_ending_in_a_newline_is_none() -> None:
    aws = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    assert is_aws_kms_arn(aws)
    assert not is_aws_kms_arn(aws + "\n")
    local = "arn:openprofiles:kms:us-east-1:000000000000:key/00000000-0000-0000-0000-000000000000"
    assert parse_local_key_arn(local) is not None
    assert parse_local_key_arn(local + "\n") is None
