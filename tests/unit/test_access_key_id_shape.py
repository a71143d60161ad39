"""An access key id that cannot be one (a NUL, a character outside ASCII, too short or too long)
is an unknown key on both databases, found without asking the database: PostgreSQL refuses a
NUL in text with an error, which was a 500 where SQLite answered "unknown"."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from openprofiles.auth import credentials
from openprofiles.auth.authenticator import Authenticator
from openprofiles.auth.credentials import (
    create_credential,
    delete_credential,
    find_secret,
    set_credential_scope,
)
from openprofiles.context import Services
from openprofiles.errors import NotFound, UnrecognizedClient

NOT_KEYS = ["OPABCDEFGH\x00IJKLMNOP", "AK\x00X", "OPABCDEFGHIJKLMNOPé", "OP1234", "A" * 129, ""]


@pytest.mark.parametrize("key", NOT_KEYS)
def test_a_key_id_of_no_keys_shape_is_unknown(services: Services, key: str) -> None:
    with services.read() as tx:
        assert find_secret(tx, access_key_id=key) is None


@pytest.mark.parametrize("key", [key for key in NOT_KEYS if key])  # "": no Credential at all
def test_a_key_id_of_no_keys_shape_in_the_authorization_header_is_unknown(
    services: Services, key: str
) -> None:
    today = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    headers = {
        "host": "openprofiles.test",
        "x-amz-date": today,
        "authorization": f"AWS4-HMAC-SHA256 Credential={key}/{today[:8]}/us-east-1/profile/"
        f"aws4_request, SignedHeaders=host;x-amz-date, Signature={'0' * 64}",
    }
    authenticator = Authenticator(services, 900)
    try:
        with pytest.raises(UnrecognizedClient):
            authenticator.check_headers("GET", "/domains", "", headers)
    finally:
        authenticator.close()


@pytest.mark.parametrize("key", NOT_KEYS)
def test_revoking_or_scoping_a_key_id_of_no_keys_shape_finds_none(
    services: Services, key: str
) -> None:
    with services.write() as tx, pytest.raises(NotFound, match="No credential has"):
        delete_credential(tx, access_key_id=key)
    with services.write() as tx, pytest.raises(NotFound, match="No credential has"):
        set_credential_scope(tx, access_key_id=key, domains=None)


def test_our_keys_and_awss_have_the_shape(services: Services) -> None:
    with services.write() as tx:
        issued = create_credential(tx, role="agent")
    could_be_access_key_id = credentials.could_be_access_key_id
    assert could_be_access_key_id(issued.access_key_id)
    with services.read() as tx:
        found = find_secret(tx, access_key_id=issued.access_key_id)
    assert found is not None and found.secret == issued.secret_access_key
    # AWS's: IAM's AccessKeyId is 16 to 128 word characters (AKIA..., ASIA...).
    assert could_be_access_key_id("AKIAIOSFODNN7EXAMPLE")
    assert could_be_access_key_id("A" * 16) and could_be_access_key_id("a_" * 64)
