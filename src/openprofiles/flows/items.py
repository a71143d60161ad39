"""The records of one item (a file or an object) of a flow's source, read without holding more
of it than one JSON document.

* An item of at most `MAX_DOCUMENT_BYTES` is read whole and cut by openprofiles.json_text: one
  JSON value, the elements of an array, or JSON lines.
* A larger item is read `CHUNK_BYTES` at a time as JSON lines, one record per line, so that a
  multi-GB export costs a chunk and a batch of records, not its size. Only a line can be told
  from the next without parsing the whole, so the item must be JSON lines: when none of its
  first lines is a JSON object on its own (a JSON array, a pretty-printed document), nothing of
  it is read and it fails whole, the reason saying why and what to do (JSON lines, or smaller
  parts); a first line too long to judge counts as one when it starts with `{`, unless it is
  all the item holds (one JSON document, minified on one line: it fails whole, saying so).
  In such an item a line that is not UTF-8, or longer than `MAX_DOCUMENT_BYTES`, is a record
  that fails alone (`BadRecord`), as a line that is not JSON does.

An item that cannot be opened, is not UTF-8 text, or is neither JSON nor JSON lines fails whole
(`ItemFailed`) before any of its records is handed out; one deleted since it was listed is no
item (flows.sources.ItemGone, raised as it is). A read that breaks off later is either
the source failing (SourceError: the run stops, and reads the item again next time) or this
item (ItemError: the rest of it is one `BadRecord`, and the item counts as failed).

Reading commits nothing: the records of a resumed item that an earlier run applied are read
again and passed over, and a line too long to keep is read to its end, which on a multi-GB
item can take longer than a run's claim on its flow lasts (flows.claims STALE_AFTER). The
caller's `renew` is called after each chunk read, to renew the claim (at a bounded rate, as it
chooses: flows.claims `Renewal`).
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NamedTuple

from openprofiles.flows.sources import FlowSource, ItemError, ItemStream, SourceItem
from openprofiles.ingest.bulk import places
from openprofiles.json_text import JsonTextError, split_json_text

MIB = 1024 * 1024
# The most of an item read and parsed at once: a whole JSON document, or one line of JSON lines.
# A document costs several times its size once parsed; 32 MiB stays well inside a small server.
MAX_DOCUMENT_BYTES = 32 * MIB
CHUNK_BYTES = MIB
UNCHANGED = (
    "Nothing of it was ingested; the flow reads it again when it changes, or when it is run on "
    "demand."
)


class ItemFailed(Exception):
    """The item as a whole cannot be ingested: `reason` says why, `content` is what was read of
    it (as text) for the dead letter, `version` the version of that content (None when it could
    not be opened)."""

    def __init__(self, reason: str, content: str, version: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.content = content
        self.version = version


@dataclass(frozen=True)
class BadRecord:
    """A part of a streamed item that cannot be read as a record: `reason` says which and why,
    `content` is what can be kept of it, `place` where it is ("line 3", "from line 9")."""

    reason: str
    content: str
    place: str


class ItemRecord(NamedTuple):
    """A record of an item: its JSON text, and where it is in the item ("line 3", "array index
    2"; None for an item that is one record), for its dead letter's origin."""

    text: str
    place: str | None


@dataclass
class ItemRecords:
    # The version of the content read (flows.sources.ItemStream.version).
    version: str
    # The records, or BadRecord for a part that is not a record.
    records: Iterator[ItemRecord | BadRecord]
    # Set once the rest of the item could not be read (its last record is a BadRecord).
    failed: bool = False


@contextmanager
def item_records(
    source: FlowSource, item: SourceItem, renew: Callable[[], None] = lambda: None
) -> Iterator[ItemRecords]:
    """The item's records, read while the context is open; ItemFailed on entry when the item as
    a whole cannot be read (see the module docstring). SourceError when the source cannot.
    `renew` is called after each chunk read (the module docstring); what it raises is raised
    as it is."""
    try:
        stream = source.open(item.key)
    except ItemError as exc:
        raise ItemFailed(f"{_capitalised(exc.message.rstrip('.'))}. {UNCHANGED}", "") from exc
    with stream:
        try:
            head = _read(stream, MAX_DOCUMENT_BYTES + 1, renew)
        except ItemError as exc:
            raise ItemFailed(
                f"{_capitalised(exc.message.rstrip('.'))}. {UNCHANGED}", "", stream.version
            ) from exc
        if len(head) > MAX_DOCUMENT_BYTES:
            if head.startswith(codecs.BOM_UTF8):
                del head[: len(codecs.BOM_UTF8)]
            _check_json_lines(source, item, stream.version, head)
            read = ItemRecords(stream.version, iter(()))
            # The head is the lines' first buffer, held by them only.
            lines = _lines(source, item, stream, head, read, renew)
            read.records = _not_one_long_line(source, item, stream.version, lines)
            del head
            yield read
            return
    records = _document(source, item, stream.version, head)
    del head
    yield ItemRecords(stream.version, iter(records))


def _read(stream: ItemStream, size: int, renew: Callable[[], None]) -> bytearray:
    """`size` bytes of the stream, fewer only at its end; `renew` called after each chunk."""
    data = bytearray()
    while len(data) < size and (chunk := stream.read(min(CHUNK_BYTES, size - len(data)))):
        data += chunk
        renew()
    return data


def _document(
    source: FlowSource, item: SourceItem, version: str, data: bytearray
) -> list[ItemRecord]:
    """The raw records of an item read whole; ItemFailed when it is not UTF-8 text or is
    neither JSON nor JSON lines."""
    # A byte order mark is no part of the text (some exporters write one).
    bom = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        text = data[bom:].decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = bom + exc.start
        line = data.count(b"\n", 0, offset) + 1
        raise ItemFailed(
            f"{_capitalised(source.describe(item.key))} is not UTF-8 text: the byte "
            f"0x{data[offset]:02X} at offset {offset} (line {line}) is not valid UTF-8. "
            f"{UNCHANGED}",
            # Shown as \xNN escapes, the bytes that are not UTF-8 keep their values (and make
            # the letter invalid JSON, so a retry cannot ingest a garbled record).
            data[bom:].decode("utf-8", errors="backslashreplace"),
            version,
        ) from exc
    try:
        raws = split_json_text(text)
    except JsonTextError as exc:  # NotJsonText, or nested too deep to parse
        raise ItemFailed(
            f"{_capitalised(source.describe(item.key))} is neither JSON nor JSON lines: "
            f"{exc.message.rstrip('.')}. {UNCHANGED}",
            text,
            version,
        ) from exc
    return [ItemRecord(raw, place) for raw, place in zip(raws, places(text, raws), strict=True)]


# Lines of an item too large to read whole looked at to tell JSON lines from one document.
LINES_LOOKED_AT = 100


def _check_json_lines(source: FlowSource, item: SourceItem, version: str, head: bytearray) -> None:
    """ItemFailed unless an item too large to read whole is JSON lines: it does not start with
    a JSON array, and one of its first LINES_LOOKED_AT non-empty lines is a JSON object on its
    own, or its first non-empty line, too long to end in `head`, starts with `{`. Not the first
    line alone: an export whose first record is broken, or too long, is still JSON lines, and
    that record fails alone (a pretty-printed document has no line that is an object on its
    own)."""
    if head.lstrip().startswith(b"["):
        is_lines = False
    else:
        is_lines, start, looked = False, 0, 0
        # A line without its end in `head` is longer than any record may be.
        while not is_lines and looked < LINES_LOOKED_AT and (end := head.find(b"\n", start)) != -1:
            line = head[start:end].strip()
            start = end + 1
            if not line:
                continue
            looked += 1
            try:
                is_lines = line.startswith(b"{") and isinstance(json.loads(line), dict)
            except (ValueError, RecursionError):  # not UTF-8, not JSON
                continue
        # The first line that is not blank has no end in `head`: longer than the most a flow
        # reads of one record, it cannot be parsed to tell, but it begins as a record does.
        # It fails alone (`_lines`: a BadRecord), as it would second, and the lines after it
        # are read, rather than the whole export dead-lettered, content-less, as no JSON lines.
        # A JSON array is refused above; a pretty-printed object has a line end in its head;
        # a minified one, alone on its line, has no record after it (`_not_one_long_line`).
        if not is_lines and looked == 0:
            is_lines = head[start:].lstrip().startswith(b"{")
    if not is_lines:
        raise _not_json_lines(
            source,
            item,
            version,
            f"a JSON array, or none of its first {LINES_LOOKED_AT} lines is a JSON object on "
            "its own",
        )


def _not_json_lines(source: FlowSource, item: SourceItem, version: str, why: str) -> ItemFailed:
    """The item too large to read whole failed whole, not being JSON lines (`why`)."""
    return ItemFailed(
        f"{_capitalised(source.describe(item.key))} is larger than {_bytes(MAX_DOCUMENT_BYTES)}"
        f", the most a flow reads as one JSON document, and is not JSON lines ({why}). Nothing "
        "of it was ingested; export it as "
        f"JSON lines (one record per line), or in parts of at most "
        f"{_bytes(MAX_DOCUMENT_BYTES)}.",
        "",
        version,
    )


def _not_one_long_line(
    source: FlowSource, item: SourceItem, version: str, records: Iterator[ItemRecord | BadRecord]
) -> Iterator[ItemRecord | BadRecord]:
    """The records of `_lines`, or ItemFailed (`_not_json_lines`) before any is handed out when
    the item is one line too long to read and nothing else (blank lines aside): one JSON
    document on one line, as minified exports are (`{"Records": [...]}`, with or without a line
    end). Its first line starting with `{`, `_check_json_lines` took it for JSON lines, whose
    first record is too long (that record fails alone, the rest is read); with no rest, the
    item's reason is that it is too large a document, and what to do — not that its line 1 is
    too long a record. Only the next record is waited for (the lines up to it are read, a
    chunk at a time): with one, the long line fails alone, as before."""
    first = next(records, None)
    if first is None:
        return
    if isinstance(first, _Overlong):
        second = next(records, None)
        if second is None:
            raise _not_json_lines(
                source, item, version, f"all of it is one line, {first.size} bytes long"
            )
        yield first
        first = second
    yield first
    yield from records


def _lines(
    source: FlowSource,
    item: SourceItem,
    stream: ItemStream,
    buffer: bytearray,
    read: ItemRecords,
    renew: Callable[[], None],
) -> Iterator[ItemRecord | BadRecord]:
    """The records of JSON lines read from `buffer` (the item's start, consumed) and then the
    stream, a chunk at a time (`renew` called after each); a line longer than MAX_DOCUMENT_BYTES
    is not kept, only said (a BadRecord)."""
    # Where the search for the next line end resumes, and the line number of the next line.
    searched = 0
    number = 1
    # The bytes dropped of a line over the limit, while its end is still to come.
    dropped: int | None = None
    while True:
        start = 0
        while (end := buffer.find(b"\n", searched)) != -1:
            if dropped is not None or end - start > MAX_DOCUMENT_BYTES:
                yield _overlong(source, item, number, (dropped or 0) + end - start)
                dropped = None
            elif record := _line(source, item, number, bytes(buffer[start:end])):
                yield record
            number += 1
            start = searched = end + 1
        del buffer[:start]
        searched = len(buffer)
        if len(buffer) > MAX_DOCUMENT_BYTES:
            dropped = (dropped or 0) + len(buffer)
            buffer.clear()
            searched = 0
        try:
            chunk = stream.read(CHUNK_BYTES)
        except ItemError as exc:
            read.failed = True
            yield BadRecord(
                f"{_capitalised(exc.message.rstrip('.'))}: the rest of it, from line {number}, "
                "was not read "
                "(the records before it were).",
                "",
                f"from line {number}",
            )
            return
        # Between records as within one line too long to keep: nothing else renews the claim
        # while records are passed over, or while such a line is read to its end.
        renew()
        if not chunk:
            break
        buffer += chunk
    if dropped is not None or len(buffer) > MAX_DOCUMENT_BYTES:
        yield _overlong(source, item, number, (dropped or 0) + len(buffer))
    elif record := _line(source, item, number, bytes(buffer)):
        yield record


def _line(
    source: FlowSource, item: SourceItem, number: int, line: bytes
) -> ItemRecord | BadRecord | None:
    """The record of one line of JSON lines (None for a blank line)."""
    line = line.strip()
    if not line:
        return None
    try:
        return ItemRecord(line.decode("utf-8"), f"line {number}")
    except UnicodeDecodeError as exc:
        return BadRecord(
            f"Line {number} of {source.describe(item.key)} is not UTF-8 text: the byte "
            f"0x{line[exc.start]:02X} at offset {exc.start} of the line is not valid UTF-8.",
            line.decode("utf-8", errors="backslashreplace"),
            f"line {number}",
        )


@dataclass(frozen=True)
class _Overlong(BadRecord):
    """A line longer than MAX_DOCUMENT_BYTES, `size` bytes long (`_not_one_long_line`)."""

    size: int = 0


def _overlong(source: FlowSource, item: SourceItem, number: int, size: int) -> BadRecord:
    return _Overlong(
        f"Line {number} of {source.describe(item.key)} is {size} bytes long, more than the "
        f"{_bytes(MAX_DOCUMENT_BYTES)} a flow reads of one record; it was not read.",
        "",
        f"line {number}",
        size,
    )


def _bytes(size: int) -> str:
    return f"{size // MIB} MiB" if size % MIB == 0 else f"{size} bytes"


def _capitalised(message: str) -> str:
    return message[:1].upper() + message[1:]
