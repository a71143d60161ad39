"""Where flows read from: the `FlowSource` seam with an S3 implementation (any S3-compatible
endpoint, `settings.s3_endpoint_url`) and a local-folder one. Items are files or objects of
JSON lines (or one JSON array); each has a version (ETag, or mtime and size) so a flow can tell
new and changed items from the ones it has read.

An item is read as a stream (`open`), never whole: flows.items decides how much of it to hold.
The stream carries the version of the content it reads — GetObject's ETag, the open file's
mtime and size — which is what the flow checkpoints: an item replaced between the listing and
the read is checkpointed under the version that was read, so the next run neither skips a
newer version nor reads the same one again.

Two kinds of failure: `SourceError` when the source as a whole cannot be listed or read (folder
missing, bucket missing, credentials refused, endpoint unreachable) — the run fails, and reads
the items again when it next runs; an S3 object's body broken off midway too, whatever raised
it: botocore, urllib3 or the socket — and `ItemError` when one item cannot be read while the rest
of the source can (a file that cannot be opened or looked at, a link out of the folder roots
or a loop of links, an archived object) — the run dead-letters that item and goes on with the
next. An item deleted since it was listed is neither: `ItemGone`
says it is no longer there (a file deleted, an object deleted, or being replaced by a delete
and a put), and the run passes it over without a trace, so a run that lists it again reads it.

A file being written is not yet a whole item: a file copied into the folder (an export, an
upload) grows for a while, and read meanwhile its last line is cut off and a JSON array is
unterminated, so the part read would be dead-lettered, and that letter would stay after the
file, complete, was read again. A folder's items therefore carry their modification time
(`modified_at`), and automatic runs leave a file changed within the last
`settings.flow_folder_settle_seconds` for a later run (flows.listing.settled). S3 objects appear
whole when their upload completes, so theirs is None.

A folder source reads only under the configured roots (`settings.flow_folder_roots`, by default
DATA_DIR/flows), checked with symlinks followed when the flow is defined and again at every
listing and read: a link may have changed since, or the roots been narrowed. The folder out of
them fails the run; a file of it linking out of them is a failed item, its reason not naming
the roots (the server's, not the domain admins' to know).
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from openprofiles.flows.models import Flow
from openprofiles.settings import Settings

# The user-info part of a URL ("user:secret@" in http://user:secret@host/): botocore's
# connection errors quote the request's URL, the endpoint's credentials included.
_URL_USERINFO = re.compile(r"(?<=://)[^/@\s\"']*@")


def _botocore_said(exc: Exception) -> str:
    """What botocore's error says, without credentials an endpoint URL may carry."""
    return _URL_USERINFO.sub("", str(exc))


class SourceError(Exception):
    """The source cannot be listed or read; `message` says which and why.

    The message names a folder, a file or an S3 object key, and such a name can be personal
    data (an export named after a customer's e-mail address): it is the failed run's error,
    sealed like the run and shown to the domain's admins, and logging_setup withholds it from
    every log line, as it does any exception message not known to be free of personal data."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ItemError(Exception):
    """One item cannot be read, the rest of the source can; `message` says which and why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ItemGone(Exception):
    """The item was deleted since it was listed (FileNotFoundError, S3 NoSuchKey): no item."""


@dataclass(frozen=True)
class SourceItem:
    key: str
    version: str
    # When a file of a folder was last changed (POSIX seconds), to leave one still being
    # written for a later run; None for an S3 object, which appears whole.
    modified_at: float | None = None


class ItemStream(Protocol):
    """An item opened for reading (a context manager that closes it)."""

    # The version of the content this stream reads (compare SourceItem.version).
    version: str

    def read(self, size: int) -> bytes:
        """Up to `size` bytes of the content, b"" at its end. SourceError when the source as a
        whole failed meanwhile (an S3 connection broken off, the folder gone), ItemError when
        this item cannot be read further."""

    def __enter__(self) -> ItemStream: ...

    def __exit__(self, *exc: object) -> None: ...


class FlowSource(Protocol):
    def items(self) -> list[SourceItem]:
        """Every item in the source, in key order."""

    def open(self, key: str) -> ItemStream:
        """The item's content as bytes, to be decoded by the caller (which can then keep what
        is not text); ItemError when this item cannot be opened, ItemGone when it was deleted
        since it was listed."""

    def describe(self, key: str) -> str:
        """The item for messages: "the file /path" or "the object s3://bucket/key"."""


def inside_folder_roots(settings: Settings, path: str | Path) -> Path:
    """`path` with symlinks followed; SourceError naming the allowed roots unless it is one of
    `settings`' flow folder roots or lies under one, or saying why its links cannot be followed
    (a loop of links: RuntimeError up to Python 3.12, OSError since)."""
    try:
        resolved = Path(path).resolve()
    except (OSError, RuntimeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "a loop of links"
        raise SourceError(f"The path {path} cannot be followed: {reason}.") from exc
    roots = tuple(root.resolve() for root in settings.effective_flow_folder_roots)
    if not any(resolved.is_relative_to(root) for root in roots):
        raise SourceError(
            f"The path {path} is outside the folders flows may read "
            f"({', '.join(str(r) for r in roots)}); OPENPROFILES_FLOW_FOLDER_ROOTS sets them."
        )
    return resolved


class FolderSource:
    def __init__(self, settings: Settings, folder: str) -> None:
        self.folder = Path(folder)
        self._settings = settings
        # The file names listed under another key (`_key`), by key: those that are not UTF-8.
        self._names: dict[str, str] = {}

    def items(self) -> list[SourceItem]:
        folder = inside_folder_roots(self._settings, self.folder)
        if not folder.is_dir():
            raise SourceError(f"The folder {self.folder} does not exist or is not a folder.")
        try:
            # scandir: a file's type comes with its name (no stat but for a link), and its one
            # stat is the entry's (the watcher lists every Event flow's folder every pass).
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
        except OSError as exc:
            raise SourceError(
                f"Cannot list the folder {self.folder}: {exc.strerror or exc}"
            ) from exc
        out: dict[str, SourceItem] = {}
        names: dict[str, str] = {}
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                if not entry.is_file():
                    continue
                stat = entry.stat()
            except FileNotFoundError:
                # Deleted since the folder was listed (or a link to nothing).
                continue
            except OSError:
                # One entry that cannot be looked at (a loop of links, a link into a folder
                # that may not be read, an I/O error): listed still, so that `open`, which fails
                # the same way, dead-letters it saying why — skipped, it would be lost without
                # a word (the log cannot name it: a file's name can be personal data) — while
                # the other files are read. Its version is UNREADABLE_VERSION, not one of its
                # own: see there.
                own = _own_stat(entry)
                version, modified_at = UNREADABLE_VERSION, own.st_mtime if own else None
            else:
                version, modified_at = _file_version(stat), stat.st_mtime
            key = _key(entry.name, taken=out)
            if key != entry.name:
                names[key] = entry.name
            out[key] = SourceItem(key, version, modified_at)
        self._names = names
        return sorted(out.values(), key=lambda item: item.key)

    def open(self, key: str) -> ItemStream:
        try:
            # A file of the folder may be a link to somewhere outside the roots: that file's
            # error, the others are read. The roots are the server's folders and setting, the
            # operator's to know: not named to the domain's admins, who read the dead letter.
            path = inside_folder_roots(self._settings, self.folder / self._names.get(key, key))
        except SourceError as exc:
            cause = exc.__cause__
            if isinstance(cause, OSError | RuntimeError):
                raise self._error(key, cause) from exc
            # Unless the folder itself is out of the roots (narrowed since, or the folder
            # replaced by a link): that fails the run, as it fails the listing. Asked only
            # here, not for every file read.
            inside_folder_roots(self._settings, self.folder)
            raise ItemError(
                f"{self.describe(key)} is a link to a path outside the folders flows may read "
                "on this server"
            ) from exc
        try:
            handle = path.open("rb")
        except OSError as exc:
            raise self._error(key, exc) from exc
        try:
            # The version of the file opened, which may have changed since it was listed.
            return _FileStream(self, key, handle, _file_version(os.fstat(handle.fileno())))
        except OSError as exc:
            handle.close()
            raise self._error(key, exc) from exc

    def describe(self, key: str) -> str:
        return f"the file {self.folder / key}"

    def _error(self, key: str, exc: OSError | RuntimeError) -> SourceError | ItemError | ItemGone:
        # The folder gone (unmounted, removed) fails every file: the run stops, so that the
        # files are read when it is back rather than dead-lettered one by one.
        if not self.folder.is_dir():
            return SourceError(f"The folder {self.folder} does not exist or is not a folder.")
        if isinstance(exc, FileNotFoundError):
            return ItemGone(key)
        if isinstance(exc, RuntimeError):
            # Path.resolve's word for a loop of links up to Python 3.12.
            return ItemError(f"{self.describe(key)} cannot be read: a loop of links")
        return ItemError(f"{self.describe(key)} cannot be read: {exc.strerror or exc}")


def _key(name: str, *, taken: dict[str, SourceItem]) -> str:
    """The key a file of the folder is listed, checkpointed and named under: its name, or for a
    name that is not UTF-8 (os.scandir gives its bytes as lone surrogates, which no digest,
    message or database column takes), the name with those bytes written out ("b\\xff.jsonl"),
    the source mapping it back to the name to read it (`FolderSource._names`). The file is read
    like any other, rather than dead-lettered until someone renames it: nothing of it waits,
    and the key names it well enough to be found. Keys are unique in a listing: should the
    written-out name be another file's, or another's written out the same, a number is added."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(name).decode("utf-8", "backslashreplace")
    else:
        return name
    key, number = shown, 1
    while key in taken:
        number += 1
        key = f"{shown} ({number})"
    return key


# The version of a folder's entry that cannot be looked at (`FolderSource.items`): a loop of
# links, a link into a folder that may not be read, an I/O error. The same for every such entry,
# and never a file's (theirs are "<mtime_ns>-<size>"), so that a run can tell it: the listing
# knows nothing of the file's content, and an entry that cannot be looked at for a while (a
# folder's x permission taken away, an NFS mount answering EIO) says nothing of a change. A
# version of its own (the link's lstat, as before) made every file read before dead-lettered
# once and, looked at again, read a second time, unchanged: the checkpoint differed from its
# version. An item that a run has read before is therefore passed over while it is
# unreadable (flows.checkpoints `unreadable_read_before`), and read when it can be looked at
# again and its version changed; one never read is read, and dead-lettered saying why.
UNREADABLE_VERSION = "unreadable"


def is_unreadable(version: str) -> bool:
    """Whether a listed item's version says it could not be looked at (UNREADABLE_VERSION)."""
    return version == UNREADABLE_VERSION


def _own_stat(entry: os.DirEntry[str]) -> os.stat_result | None:
    """The entry's own stat (a link's, not its target's), or None when that fails too: its
    modification time, for settling (flows.listing.settled), as a file's is."""
    try:
        return entry.stat(follow_symlinks=False)
    except OSError:
        return None


def _file_version(stat: os.stat_result) -> str:
    """A file's version: its mtime and size (UNREADABLE_VERSION for an entry that cannot be
    looked at, `FolderSource.items`). A file rewritten and given back its mtime at the same size
    (`cp -p`, tar or unzip keeping the mtimes, a coarse-timestamp filesystem) keeps its version
    and is not read again by an incremental run; a run that reads every item (an OnDemand
    flow's, a Complete one's) reads it. The ctime would tell such a rewrite, but a new version
    of every checkpoint would read each file once more on upgrade, setting back what changed
    since by other means (the API, a later file), and chmod or a backup tool would make new
    versions."""
    return f"{stat.st_mtime_ns}-{stat.st_size}"


class _FileStream:
    def __init__(self, source: FolderSource, key: str, handle: Any, version: str) -> None:
        self.version = version
        self._source = source
        self._key = key
        self._handle = handle

    def read(self, size: int) -> bytes:
        try:
            return bytes(self._handle.read(size))
        except OSError as exc:
            raise self._source._error(self._key, exc) from exc

    def __enter__(self) -> _FileStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.close()


# Errors of GetObject about the one object (archived): the others can still be read. An object
# deleted since it was listed (NoSuchKey) is gone (ItemGone). Any other error — bucket gone,
# credentials refused (AccessDenied included: S3 says it for a missing permission as much as for
# one object), throttling, a server error — fails the run, which reads the object again when it
# next runs.
OBJECT_ERRORS = frozenset({"InvalidObjectState"})


class S3Source:
    def __init__(self, settings: Settings, bucket: str, prefix: str, client: Any = None) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self._client = client or s3_client(settings)

    def items(self) -> list[SourceItem]:
        from botocore.exceptions import BotoCoreError, ClientError

        out = []
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix
            )
            for page in pages:
                for obj in page.get("Contents", []):
                    # A "folder" the S3 console made (an empty object whose key ends with "/")
                    # is no item; an object with content is one, whatever its key.
                    if not (obj["Key"].endswith("/") and obj.get("Size", 0) == 0):
                        out.append(SourceItem(obj["Key"], _object_version(obj)))
        except (ClientError, BotoCoreError) as exc:
            raise SourceError(
                f"Cannot list s3://{self.bucket}/{self.prefix}: {_botocore_said(exc)}"
            ) from exc
        return sorted(out, key=lambda i: i.key)

    def open(self, key: str) -> ItemStream:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self._client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "NoSuchKey":
                raise ItemGone(key) from exc
            if exc.response.get("Error", {}).get("Code") in OBJECT_ERRORS:
                raise ItemError(
                    f"{self.describe(key)} cannot be read: {_botocore_said(exc)}"
                ) from exc
            raise SourceError(
                f"Cannot read s3://{self.bucket}/{key}: {_botocore_said(exc)}"
            ) from exc
        except BotoCoreError as exc:
            raise SourceError(
                f"Cannot read s3://{self.bucket}/{key}: {_botocore_said(exc)}"
            ) from exc
        # The version of the object GetObject returned, which may have replaced the one listed.
        return _S3Stream(f"s3://{self.bucket}/{key}", response["Body"], _object_version(response))

    def describe(self, key: str) -> str:
        return f"the object s3://{self.bucket}/{key}"


def _object_version(found: dict[str, Any]) -> str:
    """An object's version, from ListObjectsV2 or GetObject: its ETag, without the quotes."""
    return str(found.get("ETag", "")).strip('"')


class _S3Stream:
    def __init__(self, where: str, body: Any, version: str) -> None:
        self.version = version
        self._where = where
        self._body = body

    def read(self, size: int) -> bytes:
        from http.client import HTTPException

        from botocore.exceptions import BotoCoreError
        from urllib3.exceptions import HTTPError

        try:
            return bytes(self._body.read(size))
        except (BotoCoreError, HTTPError, HTTPException, OSError) as exc:
            # The connection broke off or timed out: the run stops and reads the object again
            # next time, like an object that could not be fetched at all, and it is no more the
            # object's (nor a bug to count against it, flows.crashes). As seen through a relay
            # that breaks bodies off (tests/unit/flows/test_flows_s3_broken_off.py): a short
            # body or a reset comes as botocore's ResponseStreamingError, a TLS record that
            # cannot be read as urllib3's SSLError. The socket's and http.client's own errors
            # are caught too, for the urllib3 and botocore releases that let them through.
            raise SourceError(f"Cannot read {self._where}: {_botocore_said(exc)}") from exc

    def __enter__(self) -> _S3Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self._body.close()


def s3_client(settings: Settings) -> Any:
    return _s3_client(settings.s3_endpoint_url, settings.aws_region or settings.region)


@functools.lru_cache(maxsize=8)
def _s3_client(endpoint_url: str | None, region: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region,
        config=Config(retries={"max_attempts": 2}, connect_timeout=5, read_timeout=30),
    )


def source_for(settings: Settings, flow: Flow) -> FlowSource:
    if flow.source_kind == "folder":
        assert flow.folder is not None
        return FolderSource(settings, flow.folder)
    assert flow.bucket is not None
    return S3Source(settings, flow.bucket, flow.prefix)
