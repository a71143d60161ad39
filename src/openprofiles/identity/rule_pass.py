"""The digests of a full rule pass: every live profile of a domain, opened and digested.

Opening a profile and digesting it under the rules (rule_digests) is pure computation, about
three quarters of a pass, and Python runs it on one core per process. A large domain's profiles
are therefore digested by worker processes, in chunks, while this process reads the sealed
profiles and writes what comes back (rule_store.BulkLoad); a small domain's in this process,
where starting workers would cost more than it saves.

Workers are forked from a fork server (`multiprocessing`'s "forkserver"): a fresh
single-threaded process, not a copy of this multi-threaded server with its connections and locks.
Each receives the domain's cipher (its data key) and the compiled rules once, through the pipe
to the process that started it, and sealed profiles and packed digests after that; no value in
clear leaves the worker. Workers end with the pass.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

from openprofiles.crypto.domain_keys import DomainCipher
from openprofiles.identity.rule_digests import DigestPlan, pack
from openprofiles.profiles.models import PROFILE_TABLE

logger = logging.getLogger(__name__)

# Below this many profiles a pass digests in this process: a worker takes a few hundred
# milliseconds to start, which a small domain's whole pass does not take.
PARALLEL_FROM = 20_000
_CHUNK = 2_000
# Profiles opened together (DomainCipher.open_records): one JSON decoding for all of them.
_OPEN_AT_ONCE = 200

Sealed = tuple[str, bytes]  # (profile id, sealed profile)


@dataclass(frozen=True)
class Digested:
    """A chunk of profiles digested, as the rows the pass stages (rule_store.BulkLoad): built
    where the digests are computed, so the writing process only hands them to the database."""

    packed: list[tuple[str, bytes]]  # (profile id, its pairs packed) per profile with any


def processes_for(configured: int | None, profiles: int) -> int:
    """Worker processes for a pass over `profiles` profiles (0: digest in this process)."""
    if profiles < PARALLEL_FROM:
        return 0
    return (os.cpu_count() or 1) if configured is None else max(configured, 0)


def digest_profiles(
    cipher: DomainCipher,
    plan: DigestPlan,
    region: str,
    sealed: Iterable[Sealed],
    processes: int,
) -> Iterator[Digested]:
    """The digests of every sealed profile, chunk by chunk in the order given."""
    chunks = _chunks(sealed, _CHUNK)
    if processes <= 0:
        for chunk in chunks:
            yield _digest_chunk_with(cipher, plan, region, chunk)
        return
    context = multiprocessing.get_context("forkserver")
    # The fork server imports this module once (when it starts, at the first pass), so each
    # worker forked from it starts with the digesting code loaded.
    context.set_forkserver_preload([__name__])
    pending: deque[tuple[list[Sealed], Future[Digested]]] = deque()
    try:
        with ProcessPoolExecutor(
            max_workers=processes,
            mp_context=context,
            initializer=_start_worker,
            initargs=(cipher, plan, region),
        ) as pool:
            # A few chunks in flight per worker keeps every worker busy while this process
            # writes, without holding a large domain's sealed profiles in memory.
            for chunk in chunks:
                pending.append((chunk, pool.submit(_digest_chunk, chunk)))
                if len(pending) >= 2 * processes:
                    yield pending[0][1].result()
                    pending.popleft()
            while pending:
                yield pending[0][1].result()
                pending.popleft()
    except BrokenProcessPool as exc:
        # A worker that could not start or died (a program embedding the server whose main
        # module cannot be imported again, memory exhausted) costs speed, not the pass.
        logger.warning(
            "rule pass worker processes stopped (%s); digesting in this process", type(exc).__name__
        )
        for chunk, _ in pending:
            yield _digest_chunk_with(cipher, plan, region, chunk)
        for chunk in chunks:
            yield _digest_chunk_with(cipher, plan, region, chunk)


def _chunks(rows: Iterable[Sealed], size: int) -> Iterator[list[Sealed]]:
    chunk: list[Sealed] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _digest_chunk_with(
    cipher: DomainCipher, plan: DigestPlan, region: str, chunk: list[Sealed]
) -> Digested:
    digest: Callable[[str, str], bytes] = cipher.digest
    out = Digested([])
    for start in range(0, len(chunk), _OPEN_AT_ONCE):
        opening = chunk[start : start + _OPEN_AT_ONCE]
        for (profile_id, _), record in zip(
            opening, cipher.open_records(PROFILE_TABLE, opening), strict=True
        ):
            # Sorted: a set's order differs between processes (bytes hash with a random seed).
            pairs = sorted(plan.digests(digest, record["fields"], region))
            if pairs:
                out.packed.append((profile_id, pack(pairs)))
    return out


# A worker's cipher, plan and phone region, set once by _start_worker.
_worker: tuple[DomainCipher, DigestPlan, str] | None = None


def _start_worker(cipher: DomainCipher, plan: DigestPlan, region: str) -> None:
    global _worker
    _worker = (cipher, plan, region)


def _digest_chunk(chunk: list[Sealed]) -> Digested:
    assert _worker is not None, "the worker was not started by digest_profiles"
    return _digest_chunk_with(*_worker, chunk)
