"""Bulk ingestion of a file of objects through the one pipeline (`openprofiles ingest FILE`).

The file holds JSON lines (one object per line) or one JSON array of objects. Records are
applied in batches through `ingest_batch`, one write transaction per batch; a rejected record
writes nothing and is dead-lettered without undoing its neighbours. Re-running a file is safe:
the UNIQUE key makes every record replace itself.
"""

from __future__ import annotations

import codecs
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from itertools import islice
from pathlib import Path

from openprofiles.context import Services
from openprofiles.ingest import DEFAULT_BATCH_SIZE
from openprofiles.ingest.pipeline import IngestRejected, ingest_batch
from openprofiles.ingest.rejections import dead_letter_all
from openprofiles.json_text import JsonTextError, load_json, split_json_text
from openprofiles.object_types.service import get_object_type
from openprofiles.store.conflicts import retrying

MAX_OBJECT_CHARS = 256_000


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

    def as_dict(self) -> dict[str, float | int]:
        return {
            "read": self.read,
            "ingested": self.ingested,
            "created_profiles": self.created_profiles,
            "dead_lettered": self.dead_lettered,
            "seconds": round(self.seconds, 3),
            "records_per_second": round(self.per_second, 1),
        }


def read_records(path: Path) -> tuple[int, Iterator[str]]:
    """(number of records, the records as JSON text): JSON lines, or one JSON array (read
    whole, cut by openprofiles.json_text; ValueError saying why when it is neither). JSON lines
    are streamed: a line that is not UTF-8 becomes a record that is not JSON (its bytes as
    \\xNN), dead-lettered with the rest of the file loaded, rather than a crash half-way."""
    with path.open("rb") as probe:
        head = probe.read(4096).removeprefix(codecs.BOM_UTF8).lstrip()
    if head.startswith(b"["):
        try:
            text = path.read_bytes().decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ValueError(
                f"{path} is not UTF-8 text (byte 0x{exc.object[exc.start]:02X} at offset "
                f"{exc.start}); nothing was loaded"
            ) from None
        texts = split_json_text(text)
        return len(texts), iter(texts)
    with path.open("rb") as counting:
        total = sum(1 for line in counting if line.strip())

    def lines() -> Iterator[str]:
        with path.open("rb") as handle:
            for number, line in enumerate(handle):
                if number == 0:
                    line = line.removeprefix(codecs.BOM_UTF8)
                if line.strip():
                    yield line.decode("utf-8", "backslashreplace").strip()

    return total, lines()


def ingest_records(
    services: Services,
    *,
    domain_name: str,
    object_type_name: str,
    records: Iterable[str],
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_progress: Callable[[int], None] | None = None,
) -> BulkSummary:
    """Apply every record; raises NotFound up front for an unknown domain or object type."""
    with services.read() as tx:
        get_object_type(tx, domain_name=domain_name, name=object_type_name)
    summary = BulkSummary()
    started = time.perf_counter()
    iterator = iter(records)
    while batch := list(islice(iterator, batch_size)):
        # A batch rolled back by a race with a server's writes (PostgreSQL) runs again.
        counts = retrying(partial(_run_batch, services, domain_name, object_type_name, batch))
        summary.read += len(batch)
        summary.ingested += counts[0]
        summary.created_profiles += counts[1]
        summary.dead_lettered += counts[2]
        if on_progress is not None:
            on_progress(len(batch))
    summary.seconds = time.perf_counter() - started
    return summary


def _run_batch(
    services: Services, domain_name: str, object_type_name: str, batch: list[str]
) -> tuple[int, int, int]:
    ingested = created = 0
    with services.write() as tx:
        object_type = get_object_type(tx, domain_name=domain_name, name=object_type_name)
        parsed = [(parse_record(raw), raw) for raw in batch]
        outcomes = iter(
            ingest_batch(
                tx,
                domain_name=domain_name,
                object_type_name=object_type_name,
                records=[(source, raw) for source, raw in parsed if isinstance(source, dict)],
                object_type=object_type,
            )
        )
        rejected: list[tuple[str, IngestRejected]] = []
        for source, raw in parsed:
            outcome = source if isinstance(source, IngestRejected) else next(outcomes)
            if isinstance(outcome, IngestRejected):
                rejected.append((raw, outcome))
            else:
                ingested += 1
                created += outcome.created_profile
        dead = len(dead_letter_all(tx, domain_name, object_type_name, rejected))
    return ingested, created, dead


def parse_record(raw: str) -> dict[str, object] | IngestRejected:
    """The record as a JSON object; what PutProfileObject refuses synchronously is a rejected
    record here (there is no caller to answer). A file load and a dead letter's retry read
    records this one way."""
    if len(raw) > MAX_OBJECT_CHARS:
        return IngestRejected(
            f"The object is {len(raw)} characters long; the limit is {MAX_OBJECT_CHARS}.",
            "invalid_value",
        )
    try:
        # Strictly, as PutProfileObject's Object: NaN, a lone surrogate or a record nested
        # hundreds deep is a rejected record, not a crash further down.
        parsed = load_json(raw, "The object")
    except JsonTextError as exc:
        return IngestRejected(exc.message, "invalid_value")
    if not isinstance(parsed, dict):
        return IngestRejected("The object must be a JSON object.", "invalid_value")
    return parsed
