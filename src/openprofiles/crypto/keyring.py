"""The `local` key provider's storage: master keys in a JSON keyring file.

The file is shared by every process using one data dir (N API servers, the CLI), so:
- it is created on first use, owner-only (file 0600, a missing parent directory 0700);
- every change re-reads the file and rewrites it atomically (temp file + os.replace) while
  holding an fcntl lock on a sibling lock file, so concurrent writers never lose each other's keys;
- reads never lock (os.replace makes every read see a whole file) and reload when the file's
  identity changed, so a key created or rotated by the CLI is seen by a running server.

A key has numbered versions of material (`openprofiles keys rotate` adds one); new wraps use the
active one, and every version is kept, since data keys wrapped under an older one (not re-wrapped
yet, or in a backup of the database) are unwrapped with it. A version added by
`keys rotate --no-rewrap` is pending (newer than the active one): it unwraps but does not wrap
until `keys rotate --rewrap-only` activates it, so the keyring can be copied to every host
before any data key needs it.

File format 1, written while no key has been rotated (as before keys had versions):
{"version": 1, "keys": [{"id", "alias", "created_at", "enabled", "material"}]}.
File format 2, written once a key has more than one version:
{"version": 2, "keys": [{"id", "alias", "created_at", "enabled", "active_version",
                         "versions": [{"version", "created_at", "material"}, ...]}]}.
An OpenProfiles from before versions refuses format 2 rather than reading only the first
material and rewriting the file without the others.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import hashlib
import hmac
import json
import logging
import os
import re
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from openprofiles.crypto.arns import alias_name, local_key_arn, parse_local_key_arn
from openprofiles.crypto.errors import KeyringError

log = logging.getLogger(__name__)

DEFAULT_ALIAS = "openprofiles-default"
MATERIAL_SIZE = 32
UNROTATED_FORMAT = 1
VERSIONED_FORMAT = 2
# Used with fullmatch: with match, a final `$` also matches before a trailing newline.
ALIAS_PATTERN = re.compile(r"^[A-Za-z0-9/_-]{1,250}$")
FINGERPRINT_SIZE = 8
_FINGERPRINT_INFO = b"openprofiles/key-fingerprint"

T = TypeVar("T")
# (device, inode, size, mtime_ns): os.replace gives the file a new inode, so even two writes within
# one mtime tick are told apart.
_Signature = tuple[int, int, int, int]


@dataclass(frozen=True)
class KeyVersion:
    """One generation of a local key's material, numbered from 1."""

    number: int
    created_at: datetime
    # Never in repr: a key in a log line or a traceback is a leaked key.
    material: bytes = field(repr=False)

    @property
    def fingerprint(self) -> bytes:
        """A short public name for this material: two keyrings whose version N differs (each
        rotated on its own host, or one restored) are told apart without unwrapping anything.
        A MAC of a constant under the material, so it reveals nothing of it."""
        return hmac.new(self.material, _FINGERPRINT_INFO, hashlib.sha256).digest()[
            :FINGERPRINT_SIZE
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.number,
            "created_at": format_timestamp(self.created_at),
            "material": base64.b64encode(self.material).decode("ascii"),
        }


@dataclass(frozen=True)
class LocalKey:
    key_id: str
    alias: str
    created_at: datetime
    enabled: bool
    # Oldest first, numbered 1, 2, ...; never empty.
    versions: tuple[KeyVersion, ...]
    # The number of the version new wraps use; versions after it are pending (see the module
    # docstring).
    active_number: int

    @property
    def current(self) -> KeyVersion:
        """The version new wraps use: the active one."""
        return self.versions[self.active_number - 1]

    @property
    def pending(self) -> KeyVersion | None:
        """The newest version when it is not active yet (`keys rotate --no-rewrap`), else None."""
        newest = self.versions[-1]
        return newest if newest.number > self.current.number else None

    def version(self, number: int) -> KeyVersion | None:
        return self.versions[number - 1] if 1 <= number <= len(self.versions) else None

    def arn(self, region: str, account_id: str) -> str:
        return local_key_arn(region, account_id, self.key_id)

    def to_json(self, file_format: int) -> dict[str, Any]:
        item: dict[str, Any] = {
            "id": self.key_id,
            "alias": self.alias,
            "created_at": format_timestamp(self.created_at),
            "enabled": self.enabled,
        }
        if file_format == UNROTATED_FORMAT:
            (only,) = self.versions
            item["material"] = base64.b64encode(only.material).decode("ascii")
        else:
            item["active_version"] = self.current.number
            item["versions"] = [v.to_json() for v in self.versions]
        return item

    @classmethod
    def from_json(cls, item: dict[str, Any], file_format: int) -> LocalKey:
        key_id = str(item["id"])
        created_at = _parse_timestamp(item["created_at"])
        active = 1
        if file_format == UNROTATED_FORMAT:
            versions: tuple[KeyVersion, ...] = (
                KeyVersion(1, created_at, _material(item["material"], key_id)),
            )
        else:
            versions = tuple(
                KeyVersion(
                    int(v["version"]),
                    _parse_timestamp(v["created_at"]),
                    _material(v["material"], key_id),
                )
                for v in item["versions"]
            )
            # Unwrapping finds a version by its number, so a gap or a repeat is a damaged file.
            numbers = [v.number for v in versions]
            if not numbers or numbers != list(range(1, len(numbers) + 1)):
                raise ValueError(f"key {key_id} has versions {numbers}")
            active = int(item["active_version"])
            if not 1 <= active <= len(numbers):
                raise ValueError(f"key {key_id} has active version {active} of {numbers}")
        return cls(
            key_id=key_id,
            alias=str(item["alias"]),
            created_at=created_at,
            enabled=bool(item["enabled"]),
            versions=versions,
            active_number=active,
        )


def material_state(key: LocalKey, version: KeyVersion) -> str:
    """A version's state in AWS KMS's words (ListKeyRotations' KeyMaterialState): CURRENT (the
    active one, new wraps use it), PENDING_ROTATION (added by `keys rotate --no-rewrap`, not
    active yet) or NON_CURRENT (earlier, kept to unwrap data keys wrapped under it)."""
    if version.number == key.current.number:
        return "CURRENT"
    return "PENDING_ROTATION" if version.number > key.current.number else "NON_CURRENT"


def format_timestamp(value: datetime) -> str:
    """A time as the keyring stores it (and `keys list` shows it): ISO 8601, UTC as Z."""
    return value.isoformat().replace("+00:00", "Z")


def _parse_timestamp(value: Any) -> datetime:
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _material(encoded: Any, key_id: str) -> bytes:
    material = base64.b64decode(encoded, validate=True)
    if len(material) != MATERIAL_SIZE:
        raise ValueError(f"key {key_id} has {len(material)} bytes of material")
    return material


def normalise_alias(alias: str) -> str:
    """NAME from `NAME` or `alias/NAME`, validated (letters, digits, '/', '_', '-'; 1-250)."""
    name = alias_name(alias) or alias
    if not ALIAS_PATTERN.fullmatch(name):
        raise ValueError(
            f"The alias {alias!r} is not valid: use 1 to 250 letters, digits, '/', '_' or '-'."
        )
    return name


class Keyring:
    def __init__(self, path: Path | str) -> None:
        self._path = Path(path)
        self._lock_path = self._path.with_name(self._path.name + ".lock")
        # Guards the in-memory snapshot between threads; the fcntl lock guards the file.
        self._mutex = threading.Lock()
        self._signature: _Signature | None = None
        self._keys: dict[str, LocalKey] = {}

    @property
    def path(self) -> Path:
        return self._path

    # -- reading ---------------------------------------------------------------------------

    def list_keys(self) -> list[LocalKey]:
        return sorted(self._snapshot().values(), key=lambda k: (k.created_at, k.key_id))

    def get(self, key_id: str) -> LocalKey | None:
        return self._snapshot().get(key_id)

    def find_by_alias(self, alias: str) -> LocalKey | None:
        """The key with this alias (given as `NAME` or `alias/NAME`), or None."""
        name = alias_name(alias) or alias
        return _by_alias(self._snapshot(), name)

    def lookup(self, identifier: str) -> LocalKey | None:
        """A key by any local identifier: its ARN, `alias/NAME`, or its bare uuid.

        The ARN's region and account are not compared with the current settings: the uuid alone
        names the key, and a change of configured region must not orphan existing domains.
        """
        return _find(self._snapshot(), identifier)

    # -- changing --------------------------------------------------------------------------

    def create_key(self, alias: str) -> LocalKey:
        name = normalise_alias(alias)

        def change(keys: dict[str, LocalKey]) -> tuple[LocalKey, bool]:
            if _by_alias(keys, name) is not None:
                raise ValueError(
                    f"A local key with the alias {name!r} already exists; choose another alias."
                )
            key = _new_key(name)
            keys[key.key_id] = key
            return key, True

        key = self._mutate(change)
        log.info("created local key %s (alias %s) in %s", key.key_id, key.alias, self._path)
        return key

    def default_key(self) -> LocalKey:
        """The key new domains use when none is given; created on first use."""
        existing = _by_alias(self._snapshot(), DEFAULT_ALIAS)
        if existing is not None:
            return existing

        # Find-or-create under the file lock: two processes starting at once agree on one key.
        def change(keys: dict[str, LocalKey]) -> tuple[LocalKey, bool]:
            found = _by_alias(keys, DEFAULT_ALIAS)
            if found is not None:
                return found, False
            key = _new_key(DEFAULT_ALIAS)
            keys[key.key_id] = key
            return key, True

        return self._mutate(change)

    def disable(self, key_id: str) -> LocalKey:
        return self._set_enabled(key_id, False)

    def enable(self, key_id: str) -> LocalKey:
        return self._set_enabled(key_id, True)

    def rotate(self, identifier: str, *, activate: bool = True) -> LocalKey:
        """Give the key new material as its next version: active (new wraps use it) or, with
        `activate=False`, pending until `activate` (a keyring to copy to other hosts first).

        The earlier versions stay: data keys wrapped under them (until they are re-wrapped, and
        for good in backups of the database) are unwrapped with them. Re-wrapping the domains'
        data keys is the caller's next step (domains.key_rotation).
        """

        def change(keys: dict[str, LocalKey]) -> tuple[LocalKey, bool]:
            key = self._existing(keys, identifier)
            if not key.enabled:
                # Its domains' data keys could not be re-wrapped, nor new ones made.
                raise ValueError(
                    f"The local key {identifier} is disabled; enable it with "
                    "`openprofiles keys enable` before rotating it."
                )
            if key.pending is not None:
                # Another version on top would not be on the hosts the pending one was copied
                # to; the staged rotation must be finished first.
                raise ValueError(
                    f"Version {key.pending.number} of the local key {identifier} is pending (made "
                    "by `keys rotate --no-rewrap`); copy keyring.json to every server, then run "
                    f"`openprofiles keys rotate {identifier} --rewrap-only` to activate it."
                )
            new = KeyVersion(len(key.versions) + 1, datetime.now(UTC), os.urandom(MATERIAL_SIZE))
            keys[key.key_id] = replace(
                key,
                versions=(*key.versions, new),
                active_number=new.number if activate else key.current.number,
            )
            return keys[key.key_id], True

        key = self._mutate(change)
        log.info(
            "rotated local key %s (alias %s) to version %d (%s) in %s",
            key.key_id,
            key.alias,
            len(key.versions),
            "active" if activate else "pending",
            self._path,
        )
        return key

    def activate(self, identifier: str) -> LocalKey:
        """Make the key's newest version the one new wraps use (ends a staged rotation); a key
        with no pending version is returned unchanged."""

        def change(keys: dict[str, LocalKey]) -> tuple[LocalKey, bool]:
            key = self._existing(keys, identifier)
            if key.pending is None:
                return key, False
            keys[key.key_id] = replace(key, active_number=key.pending.number)
            return keys[key.key_id], True

        key = self._mutate(change)
        log.info("local key %s uses version %d", key.key_id, key.current.number)
        return key

    def _set_enabled(self, identifier: str, enabled: bool) -> LocalKey:
        def change(keys: dict[str, LocalKey]) -> tuple[LocalKey, bool]:
            key = self._existing(keys, identifier)
            if key.enabled == enabled:
                return key, False
            keys[key.key_id] = replace(key, enabled=enabled)
            return keys[key.key_id], True

        return self._mutate(change)

    def _existing(self, keys: dict[str, LocalKey], identifier: str) -> LocalKey:
        key = _find(keys, identifier)
        if key is None:
            raise LookupError(f"There is no key {identifier} in the keyring {self._path}.")
        return key

    # -- file handling ---------------------------------------------------------------------

    def _snapshot(self) -> dict[str, LocalKey]:
        signature = self._stat()
        if signature is None:
            # Reading never creates the keyring: `keys list` in the wrong data dir, or after the
            # file was lost, would otherwise leave an empty one behind, and the server would
            # then start on it and make new keys that open none of the data. Only a change
            # (a key created, the default key made on first start) writes it.
            with self._mutex:
                self._signature, self._keys = None, {}
            return {}
        with self._mutex:
            if signature != self._signature:
                signature, keys = self._read()
                self._signature, self._keys = signature, keys
            return self._keys

    def _mutate(self, change: Callable[[dict[str, LocalKey]], tuple[T, bool]]) -> T:
        with self._file_lock():
            # Always from disk, never from the snapshot: another process may have written since.
            _, keys = self._read()
            result, changed = change(keys)
            if changed or not self._path.exists():
                self._write(keys)
            signature, keys = self._read()
            with self._mutex:
                self._signature, self._keys = signature, keys
            return result

    def _stat(self) -> _Signature | None:
        try:
            st = os.stat(self._path)
        except FileNotFoundError:
            return None
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    def _read(self) -> tuple[_Signature | None, dict[str, LocalKey]]:
        try:
            with open(self._path, "rb") as f:
                st = os.fstat(f.fileno())
                raw = f.read()
        except FileNotFoundError:
            return None, {}
        if st.st_mode & 0o077:
            log.warning(
                "the keyring %s is readable by other users (mode %o); run chmod 600 on it",
                self._path,
                st.st_mode & 0o777,
            )
        try:
            document = json.loads(raw)
            file_format = document.get("version")
            if file_format not in (UNROTATED_FORMAT, VERSIONED_FORMAT):
                raise ValueError(f"unknown keyring version {file_format!r}")
            keys = [LocalKey.from_json(item, file_format) for item in document["keys"]]
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
            raise KeyringError(
                f"The keyring {self._path} cannot be read ({exc}); restore it from a backup. "
                "Without it, data sealed under its keys cannot be decrypted."
            ) from None
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns), {k.key_id: k for k in keys}

    def _write(self, keys: dict[str, LocalKey]) -> None:
        # Format 1 until a key is rotated: a keyring never rotated stays readable by the versions
        # of OpenProfiles from before rotation (a downgrade restoring an older release).
        rotated = any(len(k.versions) > 1 for k in keys.values())
        file_format = VERSIONED_FORMAT if rotated else UNROTATED_FORMAT
        document = {"version": file_format, "keys": [k.to_json(file_format) for k in keys.values()]}
        data = json.dumps(document, indent=2).encode("utf-8") + b"\n"
        directory = self._path.parent
        # mkstemp creates the file 0600, so the keys are never readable by others, even briefly.
        fd, tmp = tempfile.mkstemp(prefix=f".{self._path.name}.", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self._path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        # Make the rename itself durable: losing the keyring loses every domain's data.
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        self._ensure_directory()
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            # flock locks belong to the open file description, so this also excludes other
            # threads of this process (each opens its own descriptor).
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _ensure_directory(self) -> None:
        directory = self._path.parent
        if directory.exists():
            return  # someone else's directory: its mode is theirs to choose
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        # mkdir's mode is filtered by the umask; the keyring's own directory must be 0700.
        os.chmod(directory, 0o700)


def _new_key(alias: str) -> LocalKey:
    now = datetime.now(UTC)
    return LocalKey(
        key_id=str(uuid.uuid4()),
        alias=alias,
        created_at=now,
        enabled=True,
        versions=(KeyVersion(1, now, os.urandom(MATERIAL_SIZE)),),
        active_number=1,
    )


def _by_alias(keys: dict[str, LocalKey], name: str) -> LocalKey | None:
    return next((k for k in keys.values() if k.alias == name), None)


def _find(keys: dict[str, LocalKey], identifier: str) -> LocalKey | None:
    if (arn := parse_local_key_arn(identifier)) is not None:
        return keys.get(arn.key_id)
    if (name := alias_name(identifier)) is not None:
        return _by_alias(keys, name)
    return keys.get(identifier)
