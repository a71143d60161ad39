"""Key providers: where a domain's data key comes from and how it is unwrapped.

`KeyProvider` is the seam; `LocalKeyProvider` wraps data keys under a master key of the local
keyring, `KmsKeyProvider` asks any KMS-compatible endpoint. `ProviderResolver` picks the provider
from the shape of a key identifier. No function here logs or puts in a message any key material
or plaintext.
"""

from __future__ import annotations

import hmac
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ReadTimeoutError,
)

from openprofiles.crypto import aead
from openprofiles.crypto.arns import alias_name, is_aws_kms_arn, is_local_key_arn
from openprofiles.crypto.encoding import canonical_context, length_prefixed
from openprofiles.crypto.errors import DecryptionError, KeyProblem, KeyUnusable
from openprofiles.crypto.keyring import FINGERPRINT_SIZE, Keyring, KeyVersion, LocalKey
from openprofiles.settings import Settings

DATA_KEY_SIZE = 32

# The way out for a domain whose local key no copy of keyring.json holds any more, on the
# operator's word (domains.unreadable says why no keyring can prove a key lost).
LOST_KEY_DROP_COMMAND = "openprofiles domains drop-unreadable {name} --key-lost {key} --confirm"

ACCEPTED_FORMS = (
    "arn:openprofiles:kms:REGION:ACCOUNT:key/UUID (a local key), "
    "alias/NAME (a local key alias), "
    "arn:aws:kms:REGION:ACCOUNT:key/ID or arn:aws:kms:REGION:ACCOUNT:alias/NAME (AWS KMS)"
)


class KeyProvider(Protocol):
    def generate_data_key(self, key_id: str, context: Mapping[str, str]) -> tuple[bytes, bytes]:
        """A fresh 32-byte data key and the same key wrapped under `key_id` with `context`."""
        ...

    def decrypt_data_key(self, key_id: str, wrapped: bytes, context: Mapping[str, str]) -> bytes:
        """The data key inside `wrapped`; KeyUnusable if the key or the context do not match."""
        ...

    def wrap_data_key(self, key_id: str, data_key: bytes, context: Mapping[str, str]) -> bytes:
        """An existing data key wrapped under `key_id` (a change of a domain's key)."""
        ...


# A new domain's data key wrapped under version 1 of a local key is the bare AES-GCM blob,
# exactly as before keys had versions: data keys wrapped then are version 1, and a database whose
# keys were never rotated nor re-wrapped stays readable by those releases. Every other wrap (under
# a later version, and every re-wrap: `keys rotate`, `--rewrap-only`, a change of a domain's key)
# is this marker, the version number (4 bytes, big-endian), the version's fingerprint
# (KeyVersion.fingerprint, 8 bytes), then the blob. The marker is never an `aead` format byte
# (those count up from 1), so the two forms cannot be mistaken for each other, and each has its
# own associated data, so one cannot be turned into the other. The fingerprint tells a keyring
# whose version N is other material (rotated on another host too, restored) from one that lacks
# the data key's material; a re-wrap gives it to bare data keys (domains.key_rotation).
_VERSIONED_WRAP = b"\xfe"
_VERSION_HEADER_SIZE = 1 + 4 + FINGERPRINT_SIZE


@dataclass(frozen=True)
class LocalWrapHeader:
    """What a wrapped data key says of the key version it needs, read without unwrapping it."""

    version: int  # 0: damaged (no version is 0)
    # The fingerprint of that version's material; None for a bare wrap (version 1, no header).
    fingerprint: bytes | None


def _split_wrapped(wrapped: bytes) -> tuple[LocalWrapHeader, bytes]:
    if wrapped[:1] != _VERSIONED_WRAP:
        return LocalWrapHeader(1, None), wrapped
    number = int.from_bytes(wrapped[1:5], "big")
    if len(wrapped) < _VERSION_HEADER_SIZE or number < 1:
        return LocalWrapHeader(0, None), b""
    return (
        LocalWrapHeader(number, wrapped[5:_VERSION_HEADER_SIZE]),
        wrapped[_VERSION_HEADER_SIZE:],
    )


def local_wrap_header(wrapped: bytes) -> LocalWrapHeader:
    """The version of its local key (and that version's fingerprint) a wrapped data key was
    made with."""
    return _split_wrapped(wrapped)[0]


def local_wrap_version(wrapped: bytes) -> int:
    """The version of its local key a wrapped data key was made with, read without unwrapping
    it (1 for data keys wrapped before keys had versions)."""
    return local_wrap_header(wrapped).version


def other_material(header: LocalWrapHeader, key: LocalKey) -> bool:
    """Whether the key's version `header.version` is not the material the data key was wrapped
    under (its fingerprint differs): the keyring's version N was made by another rotation."""
    version = key.version(header.version)
    return (
        version is not None
        and header.fingerprint is not None
        and not hmac.compare_digest(header.fingerprint, version.fingerprint)
    )


class LocalKeyProvider:
    def __init__(self, keyring: Keyring) -> None:
        self._keyring = keyring

    def generate_data_key(self, key_id: str, context: Mapping[str, str]) -> tuple[bytes, bytes]:
        master = self._usable_key(key_id)
        data_key = os.urandom(DATA_KEY_SIZE)
        return data_key, _wrap(master, data_key, context, headed=False)

    def decrypt_data_key(self, key_id: str, wrapped: bytes, context: Mapping[str, str]) -> bytes:
        master = self._usable_key(key_id)
        header, blob = _split_wrapped(wrapped)
        number = header.version
        version = master.version(number)
        if version is None and number > len(master.versions):
            # A keyring copied before the key was rotated (a second server, a restore).
            raise KeyUnusable(
                f"The data key was wrapped under version {number} of the local key {key_id}, "
                f"but the keyring {self._keyring.path} holds only versions 1 to "
                f"{len(master.versions)} of it: it is older than the rotation "
                "(`openprofiles keys rotate`). Copy keyring.json from the data dir where the key "
                "was rotated, or restore it from a backup.",
                KeyProblem.NOT_FOUND,
                caller_message=_missing_version(key_id, number),
            )
        if version is None:
            raise _not_unwrappable(key_id)
        if header.fingerprint is not None and other_material(header, master):
            # Both fingerprints: `openprofiles keys list` on each host shows which keyring holds
            # the material the data key needs.
            raise KeyUnusable(
                f"The data key was wrapped under version {number} of the local key {key_id}, "
                f"but version {number} in the keyring {self._keyring.path} is other key "
                f"material (fingerprint {version.fingerprint.hex()}, not "
                f"{header.fingerprint.hex()}): the key was rotated separately in two keyrings "
                "(on two servers, or in a keyring restored from before the rotation and rotated "
                "again). Put back keyring.json from the data dir where the domains were "
                "re-wrapped (`openprofiles keys list` shows each version's fingerprint).",
                KeyProblem.NOT_FOUND,
                caller_message=_missing_version(key_id, number),
            )
        try:
            aad = _wrap_aad(master, version, context, headed=header.fingerprint is not None)
            return aead.open_sealed(version.material, blob, aad)
        except DecryptionError:
            raise _not_unwrappable(key_id) from None

    def wrap_data_key(self, key_id: str, data_key: bytes, context: Mapping[str, str]) -> bytes:
        # Always with the header, under version 1 too: a re-wrap is how a data key wrapped
        # before versions gets the fingerprint the start-up check compares.
        return _wrap(self._usable_key(key_id), data_key, context, headed=True)

    def _usable_key(self, key_id: str) -> LocalKey:
        key = self._keyring.lookup(key_id)
        if key is None:
            raise KeyUnusable(
                f"The local key {key_id} does not exist in the keyring {self._keyring.path}; "
                "list the keys with `openprofiles keys list` or create one.",
                KeyProblem.NOT_FOUND,
                caller_message=f"The local key {key_id} does not exist.",
            )
        if not key.enabled:
            raise KeyUnusable(
                f"The local key {key_id} is disabled; enable it with `openprofiles keys enable` "
                "or choose another key.",
                KeyProblem.DISABLED,
                caller_message=f"The local key {key_id} is disabled.",
            )
        return key


def _missing_version(key_id: str, number: int) -> str:
    """What an API caller is told of a keyring that lacks the version a data key needs."""
    return (
        f"The data key was wrapped under version {number} of the local key {key_id}, which "
        "the server's keyring does not hold."
    )


# What an API caller is told when the server cannot use KMS at all: the operator's message
# names the endpoint and the settings to fix, which are the server's own.
_KMS_NOT_SET_UP = "The server is not set up to use AWS KMS keys."


def _kms_unavailable(key_id: str) -> str:
    return f"KMS could not be reached to use key {key_id}; try again later."


def _not_unwrappable(key_id: str) -> KeyUnusable:
    message = (
        f"The data key could not be unwrapped with the local key {key_id}: it was wrapped "
        "under another key or another encryption context, or it is damaged."
    )
    if alias_name(key_id) is not None:
        # What follows `keys create --alias` run for a key missing from keyring.json: the alias
        # names a new key, which cannot unwrap what the missing one wrapped.
        message += (
            f" If the alias {key_id} was given to a new key after the key that had it went "
            "missing from keyring.json, that is another key: put back the copy of keyring.json "
            "that holds the key the data key was wrapped under (a backup, another server's data "
            "dir)."
        )
    return KeyUnusable(
        message,
        KeyProblem.INVALID_CIPHERTEXT,
        caller_message=(
            f"The data key could not be unwrapped with the local key {key_id}: it was wrapped "
            "under another key or another encryption context, or it is damaged."
        ),
    )


def _wrap(master: LocalKey, data_key: bytes, context: Mapping[str, str], *, headed: bool) -> bytes:
    """`data_key` wrapped under the key's active version (never a pending one, which other
    servers' keyrings may not hold yet): with the version header, or, under version 1 and
    not `headed`, bare as before keys had versions."""
    version = master.current
    headed = headed or version.number > 1
    blob = aead.seal(version.material, data_key, _wrap_aad(master, version, context, headed=headed))
    if not headed:
        return blob
    return _VERSIONED_WRAP + version.number.to_bytes(4, "big") + version.fingerprint + blob


def _wrap_aad(
    master: LocalKey, version: KeyVersion, context: Mapping[str, str], *, headed: bool
) -> bytes:
    if not headed:
        # Unchanged since before keys had versions: the data keys wrapped then must still open.
        return length_prefixed(
            "openprofiles/local-wrap/v1", master.key_id, canonical_context(context)
        )
    # The header is authenticated too: one changed to name another version or fingerprint does
    # not open.
    return length_prefixed(
        "openprofiles/local-wrap/v2",
        master.key_id,
        str(version.number),
        version.fingerprint,
        canonical_context(context),
    )


# KMS error codes → (problem, message template). `{key}` is the key identifier.
_KMS_ERRORS: dict[str, tuple[KeyProblem, str]] = {
    "DisabledException": (
        KeyProblem.DISABLED,
        "The KMS key {key} is disabled; enable it or choose another key.",
    ),
    "NotFoundException": (
        KeyProblem.NOT_FOUND,
        "The KMS key {key} does not exist in region {region}, or these credentials cannot see "
        "it; check the key ARN and the region.",
    ),
    "AccessDeniedException": (
        KeyProblem.ACCESS_DENIED,
        "OpenProfiles is not allowed to use KMS key {key}: grant kms:DescribeKey, "
        "kms:GenerateDataKey, kms:Encrypt and kms:Decrypt on it to the credentials "
        "OpenProfiles runs with.",
    ),
    "KMSInvalidStateException": (
        KeyProblem.INVALID_STATE,
        "The KMS key {key} cannot be used in its current state (for example pending deletion or "
        "pending import); cancel its deletion or choose another key.",
    ),
    "InvalidCiphertextException": (
        KeyProblem.INVALID_CIPHERTEXT,
        "KMS could not unwrap the data key with key {key}: it was wrapped under another key or "
        "another encryption context, or it is damaged.",
    ),
    "IncorrectKeyException": (
        KeyProblem.INVALID_CIPHERTEXT,
        "The wrapped data key was not made with the KMS key {key}; check the domain's key.",
    ),
    "InvalidKeyUsageException": (
        KeyProblem.WRONG_KEY_TYPE,
        "The KMS key {key} cannot encrypt data keys: use a symmetric ENCRYPT_DECRYPT key.",
    ),
    "KeyUnavailableException": (
        KeyProblem.UNAVAILABLE,
        "The KMS key {key} is temporarily unavailable; try again later.",
    ),
}
_KMS_TRANSIENT = {
    "DependencyTimeoutException",
    "KMSInternalException",
    "ThrottlingException",
    "LimitExceededException",
    "ServiceUnavailableException",
    "InternalFailure",
}
_KMS_CREDENTIAL_ERRORS = {
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "ExpiredTokenException",
    "IncompleteSignature",
}


class KmsKeyProvider:
    def __init__(self, endpoint_url: str | None, region: str | None, *, client: Any = None) -> None:
        """`client` is a ready boto3 KMS client (own credentials or retries, as a test makes
        it); by default one is made on first use from `endpoint_url`, `region` and boto3's
        credential chain."""
        self._endpoint_url = endpoint_url
        self._region = region
        self._client: Any = client
        self._client_lock = threading.Lock()

    def generate_data_key(self, key_id: str, context: Mapping[str, str]) -> tuple[bytes, bytes]:
        client = self._kms()
        try:
            # Config time only (new domain, key change), so the extra call is cheap; it gives a
            # precise message for keys that cannot work and enforces the key state on endpoints
            # that do not check it on GenerateDataKey (moto does not).
            self._check_key(client, key_id)
            response = client.generate_data_key(
                KeyId=key_id, KeySpec="AES_256", EncryptionContext=dict(context)
            )
        except (ClientError, BotoCoreError) as exc:
            raise self._unusable(key_id, exc) from None
        plaintext = bytes(response["Plaintext"])
        if len(plaintext) != DATA_KEY_SIZE:
            raise KeyUnusable(
                f"The KMS endpoint returned a {len(plaintext)}-byte data key for {key_id}, "
                f"not {DATA_KEY_SIZE}; is it really KMS-compatible?",
                KeyProblem.WRONG_KEY_TYPE,
            )
        return plaintext, bytes(response["CiphertextBlob"])

    def decrypt_data_key(self, key_id: str, wrapped: bytes, context: Mapping[str, str]) -> bytes:
        return self.unwrap_naming_key(key_id, wrapped, context)[0]

    def unwrap_naming_key(
        self, key_id: str, wrapped: bytes, context: Mapping[str, str]
    ) -> tuple[bytes, str | None]:
        """`decrypt_data_key`, with the ARN of the key that unwrapped it (KMS's KeyId; None if
        the endpoint does not say): for an alias ARN `key_id`, the key the alias named, which
        KMS no longer says once the alias is gone (domains.unreadable records it)."""
        client = self._kms()
        try:
            response = client.decrypt(
                CiphertextBlob=wrapped, EncryptionContext=dict(context), KeyId=key_id
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "AccessDeniedException":
                # KMS (and moto) also answer AccessDenied when the blob names another key.
                raise KeyUnusable(
                    f"KMS refused to unwrap the data key with key {key_id}: either OpenProfiles is "
                    "not allowed to use the key (grant kms:Decrypt on it to the credentials "
                    "OpenProfiles runs with) or the data key was wrapped under another key.",
                    KeyProblem.ACCESS_DENIED,
                ) from None
            raise self._unusable(key_id, exc) from None
        except BotoCoreError as exc:
            raise self._unusable(key_id, exc) from None
        named = response.get("KeyId")
        return bytes(response["Plaintext"]), str(named) if named else None

    def wrap_data_key(self, key_id: str, data_key: bytes, context: Mapping[str, str]) -> bytes:
        client = self._kms()
        try:
            self._check_key(client, key_id)  # config time, as in generate_data_key
            response = client.encrypt(
                KeyId=key_id, Plaintext=data_key, EncryptionContext=dict(context)
            )
        except (ClientError, BotoCoreError) as exc:
            raise self._unusable(key_id, exc) from None
        return bytes(response["CiphertextBlob"])

    def _check_key(self, client: Any, key_id: str) -> None:
        metadata = client.describe_key(KeyId=key_id)["KeyMetadata"]
        state = metadata.get("KeyState") or ("Enabled" if metadata.get("Enabled") else "Disabled")
        if state == "Disabled":
            raise KeyUnusable(
                _KMS_ERRORS["DisabledException"][1].format(key=key_id), KeyProblem.DISABLED
            )
        if state != "Enabled":
            raise KeyUnusable(
                f"The KMS key {key_id} is in the state {state} and cannot be used; "
                "cancel its deletion, finish its import, or choose another key.",
                KeyProblem.INVALID_STATE,
            )
        usage = metadata.get("KeyUsage", "ENCRYPT_DECRYPT")
        spec = metadata.get("KeySpec") or metadata.get("CustomerMasterKeySpec", "SYMMETRIC_DEFAULT")
        if usage != "ENCRYPT_DECRYPT" or spec != "SYMMETRIC_DEFAULT":
            raise KeyUnusable(
                f"The KMS key {key_id} is a {spec} key for {usage}; OpenProfiles needs a "
                "symmetric (SYMMETRIC_DEFAULT) ENCRYPT_DECRYPT key.",
                KeyProblem.WRONG_KEY_TYPE,
            )

    def confirm_deleted(
        self,
        key_id: str,
        wrapped: bytes,
        context: Mapping[str, str],
        witnesses: list[str],
        *,
        named_key: str | None = None,
        aliased_key: str | None = None,
    ) -> None:
        """Return only when KMS proves deleted the key `key_id` (a key ARN), or the key an alias
        ARN `key_id` named; else KeyUnusable says what KMS answered (the key disabled, pending
        deletion, not allowed) or why its answer proves nothing.

        The proof is DescribeKey answering NotFound for the key ARN, never a Decrypt: KMS
        answers a Decrypt of a deleted key's data key (without KeyId) with AccessDenied, as it
        does for a key these credentials may not use, so a Decrypt cannot tell the two apart.
        A NotFound proves something only from a client that reaches the server's KMS, in the
        key's account and region (`_prove_client`): the wrong region, another endpoint or
        another account's credentials answer NotFound for every key.

        An alias ARN says nothing once the alias is gone (KMS deletes a key's aliases with it,
        and an alias may be deleted or moved alone): a Decrypt without KeyId that still unwraps
        the data key names the key, not deleted; otherwise the operator names the key the alias
        named (`named_key`), which must be the key OpenProfiles saw the alias name when the key
        still worked (`aliased_key`, KMS's KeyId then, as domains.unreadable records it), and
        that key must be proven deleted. DescribeKey answers NotFound for a key that never
        existed as for a deleted one, so a key ARN the operator gives proves nothing alone."""
        client = self._kms()
        region = str(self._region or client.meta.region_name)
        named = key_id.split(":")[3]
        if named != region:
            raise KeyUnusable(
                f"The KMS key {key_id} is in region {named}, but KMS is called in region "
                f"{region}, where it cannot be found whether or not it exists; set "
                f"OPENPROFILES_AWS_REGION={named}, as the server runs with.",
                KeyProblem.CREDENTIALS,
            )
        if not self._not_found(client, key_id):
            raise KeyUnusable(
                f"KMS describes the key {key_id} as enabled: it is not deleted.",
                KeyProblem.INVALID_CIPHERTEXT,
            )
        target = key_id
        if _is_alias_arn(key_id):
            target = self._aliased_key(client, key_id, wrapped, context, named_key, aliased_key)
            if not self._not_found(client, target):
                raise KeyUnusable(
                    f"KMS describes the key {target} (named with --key-lost for the alias "
                    f"{key_id}) as enabled: it is not deleted.",
                    KeyProblem.INVALID_CIPHERTEXT,
                )
        elif named_key is not None and named_key != key_id:
            raise KeyUnusable(
                f"--key-lost {named_key} is not the domain's key {key_id}.",
                KeyProblem.INVALID_IDENTIFIER,
            )
        self._prove_client(client, target, [k for k in witnesses if k != target])

    def _not_found(self, client: Any, key_id: str) -> bool:
        """Whether DescribeKey answers NotFound for `key_id`; False when the key is enabled,
        KeyUnusable when it is disabled or pending deletion, or KMS answers anything else."""
        try:
            self._check_key(client, key_id)  # disabled, pending deletion: KeyUnusable
        except ClientError as exc:
            problem = self._unusable(key_id, exc)
            if problem.problem is not KeyProblem.NOT_FOUND:
                raise problem from None
            return True
        except BotoCoreError as exc:
            raise self._unusable(key_id, exc) from None
        return False

    def _aliased_key(
        self,
        client: Any,
        alias: str,
        wrapped: bytes,
        context: Mapping[str, str],
        named_key: str | None,
        aliased_key: str | None,
    ) -> str:
        """The key ARN the gone alias `alias` named: `aliased_key`, the one recorded when it
        worked, which the operator's `named_key` must be. A Decrypt without KeyId that still
        unwraps the data key refuses first, naming the key that is still there."""
        try:
            # Without KeyId: the key the data key was wrapped under, whatever alias named it.
            response = client.decrypt(CiphertextBlob=wrapped, EncryptionContext=dict(context))
        except (ClientError, BotoCoreError) as exc:
            answered = (
                exc.response.get("Error", {}).get("Code", "Unknown")
                if isinstance(exc, ClientError)
                else type(exc).__name__
            )
        else:
            raise KeyUnusable(
                f"KMS does not find {alias}, but it still holds the key "
                f"{response.get('KeyId', '?')} the data key was wrapped under: give that key "
                "back the alias (aws kms create-alias), or change the domain's key to it.",
                KeyProblem.NOT_FOUND,
            )
        unsaid = (
            f"The alias {alias} does not exist, and KMS does not say which key it named: a "
            f"Decrypt of the data key answers {answered}, which KMS answers for a deleted key "
            "and for one these credentials may not use alike."
        )
        prefix = alias.split(":alias/", 1)[0] + ":key/"
        if aliased_key is not None and not (
            aliased_key.startswith(prefix) and is_aws_kms_arn(aliased_key)
        ):
            aliased_key = None  # an alias names a key of its own account and region, no other
        if aliased_key is None:
            # A key ARN the operator gives cannot stand in: DescribeKey answers NotFound for a
            # made-up one too, and the alias's key may be alive.
            raise KeyUnusable(
                f"{unsaid} OpenProfiles never learnt which key the alias named (it records it "
                "when the key unwraps the domain's data key, since this release), so it cannot "
                "prove that key deleted. Give the key back the alias (aws kms create-alias) if "
                "it exists; else delete the domain with DeleteDomain on a server of the release "
                "the database was last run with.",
                KeyProblem.NOT_FOUND,
            )
        if named_key is None:
            raise KeyUnusable(
                f"{unsaid} When it worked, the alias named the key {aliased_key}: if KMS "
                f"deleted that key, give it to the drop: --key-lost {aliased_key}.",
                KeyProblem.NOT_FOUND,
            )
        if named_key != aliased_key:
            raise KeyUnusable(
                f"--key-lost {named_key} is not the key the alias {alias} named when it worked "
                f"({aliased_key}).",
                KeyProblem.INVALID_IDENTIFIER,
            )
        return aliased_key

    def _prove_client(self, client: Any, key_id: str, witnesses: list[str]) -> None:
        """Return when a call other than the one that answered NotFound shows this client
        reaching KMS in the account and region of `key_id`: DescribeKey of another domain's
        key there (the server's own KMS holds it), or else ListKeys listing a key of that
        account. ListKeys succeeding alone proves nothing: any endpoint or account answers it,
        and one the key never was in answers NotFound for it too."""
        account, region = key_id.split(":")[4], key_id.split(":")[3]
        home = f":kms:{region}:{account}:"
        for other in witnesses:
            if home not in other:
                continue  # another account's key proves nothing of this one's
            try:
                client.describe_key(KeyId=other)
                return
            except (ClientError, BotoCoreError):
                continue
        try:
            listed = client.list_keys(Limit=100).get("Keys", [])
        except (ClientError, BotoCoreError) as exc:
            failed = (
                exc.response.get("Error", {}).get("Code", "Unknown")
                if isinstance(exc, ClientError)
                else type(exc).__name__
            )
            found = f"ListKeys failed: {failed}"
        else:
            if any(home in str(k.get("KeyArn", "")) for k in listed):
                return
            found = f"ListKeys lists no key of account {account} in region {region}"
        raise KeyUnusable(
            f"KMS at {self._endpoint()} answers that the key {key_id} does not exist, but no "
            f"other call shows it to be the KMS of account {account} in region {region} (no "
            f"other domain's KMS key there could be described, and {found}), so its answer "
            "cannot be told from that of an endpoint or account the key never was in. Run with "
            "the AWS credentials and KMS endpoint the server runs with, allowed kms:ListKeys.",
            KeyProblem.CREDENTIALS,
        )

    def _kms(self) -> Any:
        # One client per provider, made on first use: creating it reads credentials and the
        # region, which must not happen at import or startup when no KMS key is used.
        with self._client_lock:
            if self._client is None:
                try:
                    self._client = boto3.session.Session().client(
                        "kms",
                        endpoint_url=self._endpoint_url,
                        region_name=self._region,
                        config=Config(
                            connect_timeout=5,
                            read_timeout=15,
                            retries={"max_attempts": 3, "mode": "standard"},
                        ),
                    )
                except NoRegionError:
                    raise KeyUnusable(
                        "No AWS region is configured for KMS; set OPENPROFILES_AWS_REGION "
                        "(or AWS_REGION).",
                        KeyProblem.CREDENTIALS,
                        caller_message=_KMS_NOT_SET_UP,
                    ) from None
            return self._client

    def _endpoint(self) -> str:
        if self._endpoint_url:
            return self._endpoint_url
        client = self._client
        return str(client.meta.endpoint_url) if client is not None else "(default AWS endpoint)"

    def _unusable(self, key_id: str, exc: Exception) -> KeyUnusable:
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", "Unknown"))
            if code in _KMS_ERRORS:
                problem, template = _KMS_ERRORS[code]
                region = self._region or getattr(self._client.meta, "region_name", "?")
                return KeyUnusable(template.format(key=key_id, region=region), problem)
            if code in _KMS_CREDENTIAL_ERRORS:
                return KeyUnusable(
                    f"KMS at {self._endpoint()} rejected OpenProfiles' AWS credentials ({code}); "
                    "check the access key, secret and session token it runs with.",
                    KeyProblem.CREDENTIALS,
                    caller_message=_KMS_NOT_SET_UP,
                )
            if code in _KMS_TRANSIENT:
                return KeyUnusable(
                    f"KMS at {self._endpoint()} could not serve the request for key {key_id} "
                    f"({code}); try again later.",
                    KeyProblem.UNAVAILABLE,
                    caller_message=_kms_unavailable(key_id),
                )
            return KeyUnusable(
                f"KMS refused to use key {key_id} ({code}: {error.get('Message', '')}).",
                KeyProblem.ACCESS_DENIED,
            )
        if isinstance(exc, NoCredentialsError | PartialCredentialsError):
            return KeyUnusable(
                "No AWS credentials were found for the KMS key provider; set AWS_ACCESS_KEY_ID "
                "and AWS_SECRET_ACCESS_KEY, an AWS profile, or an instance role.",
                KeyProblem.CREDENTIALS,
                caller_message=_KMS_NOT_SET_UP,
            )
        if isinstance(
            exc,
            EndpointConnectionError
            | ConnectTimeoutError
            | ReadTimeoutError
            | ConnectionClosedError,
        ):
            return KeyUnusable(
                f"OpenProfiles could not reach the KMS endpoint {self._endpoint()}; check "
                "OPENPROFILES_KMS_ENDPOINT_URL and that the service is running and reachable.",
                KeyProblem.UNAVAILABLE,
                caller_message=_kms_unavailable(key_id),
            )
        return KeyUnusable(
            f"Calling KMS at {self._endpoint()} for key {key_id} failed: {type(exc).__name__}.",
            KeyProblem.UNAVAILABLE,
            caller_message=_kms_unavailable(key_id),
        )


def _is_alias_arn(key_id: str) -> bool:
    return ":alias/" in key_id


class ProviderResolver:
    """Picks the provider for a key identifier and knows the default (local) key."""

    def __init__(self, settings: Settings, keyring: Keyring) -> None:
        self.settings = settings
        self.keyring = keyring
        self._local = LocalKeyProvider(keyring)
        self._kms: KmsKeyProvider | None = None
        self._kms_lock = threading.Lock()

    def resolve(self, key_id: str) -> KeyProvider:
        if is_aws_kms_arn(key_id):
            return self._kms_provider()
        if is_local_key_arn(key_id):
            # Existence and state are checked on use, with the provider's own message.
            return self._local
        if alias_name(key_id) is not None:
            if self.keyring.lookup(key_id) is None:
                raise KeyUnusable(
                    f"There is no local key with the alias {key_id} in the keyring "
                    f"{self.keyring.path}; create it with `openprofiles keys create`, or give a "
                    "full AWS KMS key ARN.",
                    KeyProblem.NOT_FOUND,
                    caller_message=f"There is no local key with the alias {key_id}.",
                )
            return self._local
        raise KeyUnusable(
            f"{key_id!r} is not a key identifier OpenProfiles understands; use one of: "
            f"{ACCEPTED_FORMS}.",
            KeyProblem.INVALID_IDENTIFIER,
        )

    def resolve_wrapped(self, key_id: str, domain_name: str) -> KeyProvider:
        """`resolve` for the key the data key of `domain_name` is wrapped under already: a
        local alias missing from the keyring is not to be made again (a new key under the
        alias cannot unwrap the data key, and the alias then names a key that exists, which
        hides the loss), so the message says to put back a keyring holding it instead."""
        try:
            return self.resolve(key_id)
        except KeyUnusable as exc:
            if exc.problem is not KeyProblem.NOT_FOUND or alias_name(key_id) is None:
                raise
            command = LOST_KEY_DROP_COMMAND.format(name=domain_name, key=key_id)
            raise KeyUnusable(
                f"There is no local key with the alias {key_id} in the keyring "
                f"{self.keyring.path}, and the data key of domain {domain_name} is wrapped under "
                "the key that had it. A new key made with that alias would not unwrap it: put "
                "back a copy of keyring.json that holds the key (a backup, another server's "
                "data dir). Only if no copy holding it is left anywhere, drop the domain with "
                f"`{command}`.",
                KeyProblem.NOT_FOUND,
                caller_message=exc.caller_message,
            ) from None

    def default_key_id(self) -> str:
        return self.local_arn(self.keyring.default_key())

    def local_arn(self, key: LocalKey) -> str:
        return key.arn(self.settings.region, self.settings.account_id)

    def _kms_provider(self) -> KmsKeyProvider:
        with self._kms_lock:
            if self._kms is None:
                self._kms = KmsKeyProvider(self.settings.kms_endpoint_url, self.settings.aws_region)
            return self._kms
