"""Bulk ingestion of a file of objects through the one pipeline (`openprofiles ingest FILE`).

The file holds JSON lines (one object per line), one JSON array of objects, or one JSON object.
Records are applied in batches through `ingest_batch`, one write transaction per batch on SQLite
and PG_RECORDS_PER_TRANSACTION records a transaction on PostgreSQL (store.chunks says why); a
rejected record writes nothing and is dead-lettered without undoing its neighbours. Re-running a
file is safe: the UNIQUE key makes every record replace itself.

Each record knows where it is in its file (`FileRecord.origin`: "File customers.jsonl, line 3",
"File customers.json, array index 2"), and its dead letter keeps that as its origin, named first
in its reason (dlq.service). The file is named by its base name, not by the path given: the
reason goes on to the domain's SQS queue and is shown to the domain's admins, to whom the
operator's folders (a home directory names its user) mean nothing, and a relative path would
mislead once read from another working directory.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import islice
from pathlib import Path
from typing import BinaryIO, NamedTuple

from openprofiles.context import Services
from openprofiles.ingest import DEFAULT_BATCH_SIZE, MAX_OBJECT_CHARS
from openprofiles.ingest.pipeline import IngestRejected, ingest_batch
from openprofiles.ingest.rejections import Rejected, dead_letter_all
from openprofiles.json_text import JsonTextError, load_json, split_json_text
from openprofiles.object_types.service import get_object_type
from openprofiles.store.chunks import transaction_chunks
from openprofiles.store.conflicts import retrying

# A line longer than this (in UTF-8 bytes, at most 4 a character) holds more characters than an
# object may: it is not read into memory, nor kept in its dead letter.
MAX_LINE_BYTES = 4 * MAX_OBJECT_CHARS
# The most of a file that is not JSON lines read and parsed at once, as flows.items reads an
# item; a larger file is read as JSON lines, a line at a time.
MAX_DOCUMENT_BYTES = 32 * 1024 * 1024
# How much of a file check_utf8 reads at a time.
_UTF8_CHUNK_BYTES = 1024 * 1024


class FileRecord(NamedTuple):
    """A record of a file: its JSON text; where it came from (the dead letter's origin); for a
    line too long to keep, its length in bytes (its text is then empty)."""

    text: str
    origin: str | None = None
    dropped: int | None = None


@dataclass
class BulkSummary:
    read: int = 0
    ingested: int = 0
    created_profiles: int = 0
    dead_lettered: int = 0
    seconds: float = 0.0

    @property
    def per_second(self) -> float:
        return self.read / self.seconds if self.seconds else 0.0


def file_origin(path: Path, place: str | None) -> str:
    """The origin of a record of the file at `path` (see the module docstring)."""
    return f"File {path.name}, {place}" if place else f"File {path.name}"


def places(text: str, raws: Sequence[str]) -> list[str | None]:
    """Where each record that openprofiles.json_text cut from `text` is in it: "line N" for
    JSON lines (numbered as an editor numbers them, blank lines included), "array index I" for
    an array's elements, None for a text that is one record.

    Told apart by the records themselves: JSON lines' records are their lines as they stand
    (stripped), which an array's elements never all are (the first line of an array also holds
    its opening bracket); a text that is one record on one line is line N of it, which it is."""
    lines = [(n, s) for n, line in enumerate(text.split("\n"), 1) if (s := line.strip())]
    if len(lines) == len(raws) and all(r == s for r, (_, s) in zip(raws, lines, strict=True)):
        return [f"line {n}" for n, _ in lines]
    if text.lstrip().startswith("["):
        return [f"array index {i}" for i in range(len(raws))]
    return [None] * len(raws)


def check_utf8(path: Path) -> None:
    """UnicodeDecodeError unless the file is UTF-8 throughout, read a chunk at a time. The
    `ingest` commands refuse a file that is not whole (a UTF-16 export, a binary file):
    read_records would load its other lines, and dead-letter the rest as garbage."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    with path.open("rb") as handle:
        while chunk := handle.read(_UTF8_CHUNK_BYTES):
            decoder.decode(chunk)
    decoder.decode(b"", final=True)


def read_records(path: Path) -> tuple[int, Iterator[FileRecord]]:
    """(number of records, the records): JSON lines, or one JSON document — an array of records
    or one record — read whole and cut by openprofiles.json_text (ValueError saying why when it
    is neither).

    JSON lines are streamed: a line that is not UTF-8 becomes a record that is not JSON (its
    bytes as \\xNN), dead-lettered with the rest of the file loaded, rather than a crash
    half-way; a line longer than MAX_LINE_BYTES is a record dead-lettered without its text. A
    file that is not an array and whose first line is not a JSON object on its own (a
    pretty-printed object) is read whole when it is at most MAX_DOCUMENT_BYTES: one record,
    rather than one rejected fragment a line. A first line longer than MAX_LINE_BYTES is no
    such document's opening: the file is JSON lines, and that line is dead-lettered without its
    text as any other (read whole, it was kept in its letter). A line is blank, and skipped, as
    the document path skips it (`_blank`)."""
    with path.open("rb") as probe:
        head = probe.read(4096).removeprefix(codecs.BOM_UTF8).lstrip()
        probe.seek(0)
        first = _first_line(probe)
    if head.startswith(b"["):
        size = path.stat().st_size
        if size > MAX_DOCUMENT_BYTES:
            # An array can only be parsed whole: a multi-GB export would exhaust memory.
            raise ValueError(
                f"is a JSON array of {size} bytes, more than the {MAX_DOCUMENT_BYTES} bytes read "
                "at once; export it as JSON lines (one record per line), which are read a line "
                "at a time, or in parts"
            )
        try:
            return _document(path, path.read_bytes().decode("utf-8-sig"))
        except UnicodeDecodeError as exc:
            raise ValueError(
                f"is not UTF-8 text (the byte 0x{exc.object[exc.start]:02X} at offset "
                f"{exc.start} is not valid UTF-8)"
            ) from None
    if first is not None and not _is_object(first) and path.stat().st_size <= MAX_DOCUMENT_BYTES:
        # A file not UTF-8 throughout is read below as JSON lines: a line that is not UTF-8 is
        # a rejected record, and the others are loaded.
        with contextlib.suppress(UnicodeDecodeError):
            return _document(path, path.read_bytes().decode("utf-8-sig"))
    with path.open("rb") as counting:
        total = sum(size > MAX_LINE_BYTES or not _blank(line) for _, line, size in _lines(counting))

    def lines() -> Iterator[FileRecord]:
        with path.open("rb") as handle:
            for number, line, size in _lines(handle):
                origin = file_origin(path, f"line {number}")
                if size > MAX_LINE_BYTES:
                    yield FileRecord("", origin, size)
                elif not _blank(line):
                    text = line.decode("utf-8", "backslashreplace").strip()
                    yield FileRecord(text, origin)

    return total, lines()


def _document(path: Path, text: str) -> tuple[int, Iterator[FileRecord]]:
    """The records of the file at `path`, `text` read whole."""
    try:
        texts = split_json_text(text)
    except JsonTextError as exc:
        raise ValueError(
            "is neither JSON lines, a JSON array nor one JSON object: "
            f"{exc.message[:1].lower()}{exc.message[1:].rstrip('.')}"
        ) from None
    return len(texts), iter(
        [
            FileRecord(raw, file_origin(path, place))
            for raw, place in zip(texts, places(text, texts), strict=True)
        ]
    )


def _first_line(handle: BinaryIO) -> bytes | None:
    """The first non-blank line, without its BOM; None when it is longer than MAX_LINE_BYTES
    (not held: `_lines`)."""
    for _, line, size in _lines(handle):
        if size > MAX_LINE_BYTES:
            return None
        if not _blank(line):
            return line
    return b""


def _blank(line: bytes) -> bool:
    """Whether a line holds only whitespace as str.strip() sees it, which the document path
    (openprofiles.json_text) skips lines by: a line of no-break spaces (U+00A0) is skipped on
    both paths, not a rejected record on one (nor one of ASCII separators, U+001C-U+001F)."""
    return not line.strip() or not line.decode("utf-8", "backslashreplace").strip()


def _is_object(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except (ValueError, RecursionError):  # not UTF-8, not JSON, nested too deep
        return False


def _lines(handle: BinaryIO) -> Iterator[tuple[int, bytes, int]]:
    """(number, line, its length in bytes without its end) of every line, the first without its
    BOM. A line longer than MAX_LINE_BYTES is not held (b""): it is skipped a part at a time,
    its length counted."""
    number = 0
    while line := handle.readline(MAX_LINE_BYTES + 1):
        number += 1
        if number == 1:
            line = line.removeprefix(codecs.BOM_UTF8)
        part, size = line, len(line)
        while len(part) > MAX_LINE_BYTES and not part.endswith(b"\n"):
            line = b""
            part = handle.readline(MAX_LINE_BYTES + 1)
            size += len(part)
        yield number, line, size - part.endswith(b"\n")


def ingest_records(
    services: Services,
    *,
    domain_name: str,
    object_type_name: str,
    records: Iterable[str | FileRecord],
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_progress: Callable[[int], None] | None = None,
) -> BulkSummary:
    """Apply every record (its JSON text, or a FileRecord), `batch_size` read at a time;
    `on_progress(records)` is told of each transaction once committed. Raises NotFound up
    front for an unknown domain or object type."""
    check_target(services, domain_name=domain_name, object_type_name=object_type_name)
    summary = BulkSummary()
    started = time.perf_counter()
    iterator = iter(records)
    is_sqlite = services.database.is_sqlite
    while batch := list(islice(iterator, batch_size)):
        # One transaction for the batch on SQLite; on PostgreSQL a bounded number of records
        # each (store.chunks), each counted once committed: a load stopped part-way says
        # truthfully what it applied.
        for chunk in transaction_chunks(batch, is_sqlite=is_sqlite):
            # A transaction rolled back by a race with a server's writes (PostgreSQL) runs again.
            counts = retrying(
                partial(_run_batch, services, domain_name, object_type_name, list(chunk))
            )
            summary.read += len(chunk)
            summary.ingested += counts[0]
            summary.created_profiles += counts[1]
            summary.dead_lettered += counts[2]
            if on_progress is not None:
                on_progress(len(chunk))
    summary.seconds = time.perf_counter() - started
    return summary


def check_target(services: Services, *, domain_name: str, object_type_name: str) -> None:
    """NotFound unless the domain and its object type exist."""
    with services.read() as tx:
        get_object_type(tx, domain_name=domain_name, name=object_type_name)


def _run_batch(
    services: Services, domain_name: str, object_type_name: str, batch: list[str | FileRecord]
) -> tuple[int, int, int]:
    ingested = created = 0
    records = [FileRecord(r) if isinstance(r, str) else r for r in batch]
    with services.write() as tx:
        object_type = get_object_type(tx, domain_name=domain_name, name=object_type_name)
        parsed = [(_parse(record), record) for record in records]
        outcomes = iter(
            ingest_batch(
                tx,
                domain_name=domain_name,
                object_type_name=object_type_name,
                records=[(source, r.text) for source, r in parsed if isinstance(source, dict)],
                object_type=object_type,
            )
        )
        rejected: list[Rejected] = []
        for source, record in parsed:
            outcome = source if isinstance(source, IngestRejected) else next(outcomes)
            if isinstance(outcome, IngestRejected):
                rejected.append(
                    Rejected(record.text, outcome, record.origin, _not_retryable(record))
                )
            else:
                ingested += 1
                created += outcome.created_profile
        dead = len(dead_letter_all(tx, domain_name, object_type_name, rejected))
    return ingested, created, dead


def _parse(record: FileRecord) -> dict[str, object] | IngestRejected:
    if record.dropped is not None:
        return IngestRejected(
            f"The line is {record.dropped} bytes long, more than an object of at most "
            f"{MAX_OBJECT_CHARS} characters can be; it was not kept.",
            "invalid_value",
        )
    return parse_record(record.text)


def _not_retryable(record: FileRecord) -> str | None:
    """Why `dlq retry` cannot ingest the dead letter of a line too long to keep (None for
    another record), and what to do instead."""
    if record.dropped is None:
        return None
    return (
        "This dead letter holds nothing of its record, a line too long to keep: a retry cannot "
        "ingest it. Fix the file and load it again (openprofiles ingest), then purge this dead "
        "letter."
    )


def over_the_limit(raw: str) -> IngestRejected | None:
    """The rejection of an object longer than PutProfileObject takes (None when it is not)."""
    if len(raw) <= MAX_OBJECT_CHARS:
        return None
    return IngestRejected(
        f"The object is {len(raw)} characters long; the limit is {MAX_OBJECT_CHARS}.",
        "invalid_value",
    )


def parse_record(raw: str) -> dict[str, object] | IngestRejected:
    """The record as a JSON object; what PutProfileObject refuses synchronously is a rejected
    record here (there is no caller to answer). A file load and a dead letter's retry read
    records this one way."""
    if (too_long := over_the_limit(raw)) is not None:
        return too_long
    try:
        # Strictly, as PutProfileObject's Object: NaN, a lone surrogate or a record nested
        # hundreds deep is a rejected record, not a crash further down.
        parsed = load_json(raw, "The object")
    except JsonTextError as exc:
        return IngestRejected(exc.message, "invalid_value")
    if not isinstance(parsed, dict):
        return IngestRejected("The object must be a JSON object.", "invalid_value")
    return parsed
