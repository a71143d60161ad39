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
of the source can (a file that cannot be opened, an archived object) — the run dead-letters
that item and goes on with the next. An item deleted since it was listed is neither: `ItemGone`
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
listing and read: a link may have changed since, or the roots been narrowed.
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
    `settings`' flow folder roots or lies under one."""
    resolved = Path(path).resolve()
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

    def items(self) -> list[SourceItem]:
        folder = inside_folder_roots(self._settings, self.folder)
        if not folder.is_dir():
            raise SourceError(f"The folder {self.folder} does not exist or is not a folder.")
        out = []
        try:
            # scandir: a file's type comes with its name (no stat but for a link), and its one
            # stat is the entry's (the watcher lists every Event flow's folder every pass).
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
        except OSError as exc:
            raise SourceError(
                f"Cannot list the folder {self.folder}: {exc.strerror or exc}"
            ) from exc
        for entry in entries:
            try:
                if entry.name.startswith(".") or not entry.is_file():
                    continue
                stat = entry.stat()
            except FileNotFoundError:
                # Deleted since the folder was listed.
                continue
            out.append(SourceItem(entry.name, _file_version(stat), stat.st_mtime))
        return out

    def open(self, key: str) -> ItemStream:
        # A file of the folder may be a link to somewhere outside the roots.
        path = inside_folder_roots(self._settings, self.folder / key)
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

    def _error(self, key: str, exc: OSError) -> SourceError | ItemError | ItemGone:
        # The folder gone (unmounted, removed) fails every file: the run stops, so that the
        # files are read when it is back rather than dead-lettered one by one.
        if not self.folder.is_dir():
            return SourceError(f"The folder {self.folder} does not exist or is not a folder.")
        if isinstance(exc, FileNotFoundError):
            return ItemGone(key)
        return ItemError(f"{self.describe(key)} cannot be read: {exc.strerror or exc}")


def _file_version(stat: os.stat_result) -> str:
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
                    if not obj["Key"].endswith("/"):
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
