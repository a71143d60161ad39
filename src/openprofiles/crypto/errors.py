"""The errors the crypto package raises.

They are plain exceptions, not `openprofiles.errors.ServiceError`s: whether an unusable key is the
caller's fault (BadRequestException at CreateDomain) or the server's (AccessDeniedException or
InternalServerException while reading data) depends on where it happens, so the feature service
that catches them decides. `KeyUnusable.problem` lets it decide without parsing messages.
"""

from __future__ import annotations

from enum import StrEnum


class DecryptionError(Exception):
    """A sealed blob did not open: it was tampered with, or the key or associated data differ."""


class KeyringError(Exception):
    """The local keyring file cannot be read or written (corrupt JSON, wrong format)."""

    # Written for the operator (paths, what to restore): the logs may show it.
    message_has_no_personal_data = True


class KeyProblem(StrEnum):
    """Why a key cannot be used; the message says it in words, this says it to code."""

    NOT_FOUND = "not_found"
    DISABLED = "disabled"
    INVALID_STATE = "invalid_state"
    ACCESS_DENIED = "access_denied"
    INVALID_CIPHERTEXT = "invalid_ciphertext"
    INVALID_IDENTIFIER = "invalid_identifier"
    WRONG_KEY_TYPE = "wrong_key_type"
    CREDENTIALS = "credentials"
    # Transient: the endpoint is unreachable, throttling, or KMS itself failed. Retrying may work.
    UNAVAILABLE = "unavailable"


class KeyUnusable(Exception):
    """A key cannot be used to produce or unwrap a data key; `.message` says what to do.

    `.message` is for the operator: it may name the keyring's path, the KMS endpoint, a
    setting or an `openprofiles` command. `.caller_message` says what is wrong with the key
    without any of those, for an API caller, who must not learn the server's layout.
    """

    # Key identifiers and what to do about them: the logs may show it.
    message_has_no_personal_data = True

    def __init__(
        self,
        message: str,
        problem: KeyProblem = KeyProblem.NOT_FOUND,
        *,
        caller_message: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.problem = problem
        self.caller_message = message if caller_message is None else caller_message

    @property
    def transient(self) -> bool:
        return self.problem is KeyProblem.UNAVAILABLE


class CurrentKeyUnusable(KeyUnusable):
    """The key a domain's data key is wrapped under now cannot unwrap it, when the data key is
    to be re-wrapped under another key (KeyManager.rewrap_domain_key): the fault is the current
    key's, not the new one's, and making the current key usable is the way (domains.handlers
    says so). Same message and problem as the provider's KeyUnusable it stands for."""

    def __init__(self, key_id: str, error: KeyUnusable) -> None:
        super().__init__(error.message, error.problem, caller_message=error.caller_message)
        self.key_id = key_id
