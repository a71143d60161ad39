"""The version header under version 1 of a local key: a re-wrap writes it (so the data key
records its material's fingerprint), a new data key under an unrotated key stays bare (as before
versions), both open, and neither form can be turned into the other."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import pytest

from openprofiles.crypto import aead
from openprofiles.crypto.encoding import canonical_context, length_prefixed
from openprofiles.crypto.errors import KeyUnusable
from openprofiles.crypto.keyring import Keyring
from openprofiles.crypto.providers import LocalKeyProvider, local_wrap_header

CONTEXT = {"openprofiles:domain": "sales"}


def test_a_rewrap_under_version_1_carries_the_header(tmp_path: Path) -> None:
    keyring = Keyring(tmp_path / "keyring.json")
    key = keyring.create_key("billing")
    provider = LocalKeyProvider(keyring)
    data_key, bare = provider.generate_data_key(key.key_id, CONTEXT)
    assert bare[:1] != b"\xfe"
    assert local_wrap_header(bare).fingerprint is None

    headed = provider.wrap_data_key(key.key_id, data_key, CONTEXT)
    material = key.current.material
    fingerprint = hmac.new(material, b"openprofiles/key-fingerprint", hashlib.sha256).digest()[:8]
    assert headed[:13] == b"\xfe" + (1).to_bytes(4, "big") + fingerprint
    header = local_wrap_header(headed)
    assert (header.version, header.fingerprint) == (1, fingerprint)
    # Built by hand: the associated data names version 1 and the fingerprint, as for later ones.
    aad = length_prefixed(
        "openprofiles/local-wrap/v2", key.key_id, "1", fingerprint, canonical_context(CONTEXT)
    )
    assert aead.open_sealed(material, headed[13:], aad) == data_key
    assert provider.decrypt_data_key(key.key_id, headed, CONTEXT) == data_key
    assert provider.decrypt_data_key(key.key_id, bare, CONTEXT) == data_key
    # Each form has its own associated data: neither the header stripped nor one put on a bare
    # data key opens.
    for forged in (headed[13:], headed[:13] + bare):
        with pytest.raises(KeyUnusable, match="could not be unwrapped"):
            provider.decrypt_data_key(key.key_id, forged, CONTEXT)
