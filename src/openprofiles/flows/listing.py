"""Listing a flow's source: in a thread of its own, for as long as `LISTING_LIMIT` at most, one
listing of a source at a time in the process; and which of the items listed have settled.

A run renews its claim (flows.claims) at most every `RENEW_EVERY` while the listing goes on in
its thread (`list_source`): listing a huge bucket can take minutes. A listing that has not ended
after `LISTING_LIMIT` (a hung network mount, an endpoint paging for ever) ends the run FAILED,
saying so, rather than hold the flow for ever; its thread goes on until the listing returns, and
while it does the process does not list the flow's source again (`listing_key`): a run ends
FAILED at once (LISTING_BUSY), an Event check passes the flow over — it has no run to fail, so
it logs a warning naming the flow and its domain, once per LISTING_LIMIT (`warn_stuck`) — so a
source that keeps hanging holds one thread, not one more every watcher pass. An Event check,
which the watcher makes of every flow in turn, waits for its listing EVENT_CHECK_WAIT
(flows.triggers) at most, so that a source that hangs does not hold the other flows up: a
listing not ended by then goes on in its thread as well, the flow's next checks pass it over
while it does (warning once it has gone on for LISTING_LIMIT), and the first check after it
ended takes what it listed (`_LISTED`). What is kept of a flow's listings is dropped with the
flow (`drop`).

Scheduled and Event runs read only settled items (`settled`): a file of a folder changed within
`settings.flow_folder_settle_seconds` may still be being written, and is left, unread and not
checkpointed, for a later run, which finds it new. An OnDemand run reads it anyway: whoever asks
for the run says the source is ready.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from openprofiles.context import Services
from openprofiles.flows.models import Flow
from openprofiles.flows.runs import duration
from openprofiles.flows.sources import FlowSource, SourceError, SourceItem

logger = logging.getLogger(__name__)


# How often a run renews its claim while it does not commit (listing its source, passing over
# items gone since): well within STALE_AFTER, and few transactions. `list_source` calls its
# `waiting` this often, and flows.claims `Renewal` reads it here: one setting for both.
RENEW_EVERY = timedelta(minutes=1)
# The longest a run waits for its source's listing to end. A run renews its claim while it
# lists, so a listing that never ends (a hung network mount, an endpoint that hands out pages
# for ever) would hold the flow for ever: past this the run ends FAILED and releases it. Far
# beyond what listing a large bucket takes (ListObjectsV2 pages 1000 keys in well under a
# second: millions of objects list in minutes).
LISTING_LIMIT = timedelta(hours=1)
LISTING_HUNG = (
    "The listing of the source did not end within {limit} (it began at {since}): the run "
    "stopped, so that it does not hold the flow for as long as the listing goes on, and read "
    "nothing. Check that the folder or the bucket answers (a hung network mount, an endpoint "
    "that pages for ever), then run the flow again."
)
# A listing of the flow's source that did not end (LISTING_HUNG) still goes on in this process:
# no other is begun until it has returned (`list_source`).
LISTING_BUSY = (
    "The source was not listed: an earlier listing of it, begun at {since}, has not returned "
    "yet, and a source is not listed again while a listing of it goes on (one that does not "
    "end within {limit} fails its run and goes on alone). Check that the folder or the bucket "
    "answers (a hung network mount, an endpoint that pages for ever); the flow lists it again "
    "once that listing has returned."
)
# The reason (unshown: an Event check makes no run) of a check that left its listing to its
# thread (ListingPending).
LISTING_PENDING = (
    "The listing of the source, begun at {since}, had not ended when the check stopped waiting "
    "for it: it goes on, and the flow's next check takes what it lists."
)


class ListingStuck(SourceError):
    """The source's listing did not end within LISTING_LIMIT (LISTING_HUNG), or one that did
    not still goes on in this process (LISTING_BUSY): an Event check says so in the log."""


class ListingBusy(SourceError):
    """A listing of the same source by another thread of this process goes on within its time
    (LISTING_BUSY): nothing is known of the source yet, so no failure of it (a run fails with
    it, an Event check passes the flow over until the next)."""


class ListingPending(SourceError):
    """An Event check stopped waiting for its source's listing (EVENT_CHECK_WAIT), which goes on
    in its thread; the flow's next check takes what it lists (`list_source`)."""


def settled(services: Services, items: list[SourceItem]) -> list[SourceItem]:
    """The items not changed within the settings' settle time before now (see the module
    docstring); an item with no modification time (an S3 object) is settled. Now is the clock
    when the items were just listed, never a time given for the pass (`run_due_flows`' `now`,
    taken before the flows before this one ran). A time ahead of it (another host's clock, on a
    network folder) counts as a change just made, as long as it is within the settle time: one
    further ahead would hold the file back for hours."""
    settle = services.settings.flow_folder_settle_seconds
    at = time.time()
    ready = [i for i in items if i.modified_at is None or abs(at - i.modified_at) >= settle]
    if len(ready) < len(items):
        # Counts only: a file's name can be personal data (logging_setup).
        logger.info(
            "A flow left %d of %d items for a later run: changed in the last %g s, they may "
            "still be being written.",
            len(items) - len(ready),
            len(items),
            settle,
        )
    return ready


@dataclass
class _Listing:
    """A listing going on in this process (`list_source`): when it began (`since`, for its
    messages; `started` by `clock`, the clock of the caller that began it), whether it was left
    to its thread past LISTING_LIMIT (`left`), and whether what it lists is kept, once it ends,
    for the next Event check of its flow (`kept`: an Event check left it, EVENT_CHECK_WAIT)."""

    since: datetime
    clock: Callable[[], float]
    started: float
    left: bool = False
    kept: bool = False

    def past_limit(self) -> bool:
        return self.clock() - self.started >= LISTING_LIMIT.total_seconds()


# The listings still going on in this process (`list_source`), by what they list
# (`listing_key`): a listing left to its thread (LISTING_HUNG, EVENT_CHECK_WAIT) is not begun
# again while it goes on, so a source that keeps hanging holds one thread, not one more every
# watcher pass.
_LISTINGS: dict[Hashable, _Listing] = {}
# What the listings an Event check left to their thread listed (the items, or the error raised),
# once they ended, by `listing_key`: taken by the flow's next Event check instead of listing again
# (a bucket whose listing takes longer than a check waits is still checked).
_LISTED: dict[Hashable, tuple[list[SourceItem], BaseException | None]] = {}
_LISTINGS_LOCK = threading.Lock()


def listing_key(services: Services, domain_name: str, flow: Flow) -> Hashable:
    """What `list_source` knows a flow's listing by: the flow and the source it reads (a flow
    put again with another folder or bucket lists that one, however the old one hangs), in
    this process's Services (a process has one; tests model other processes with others)."""
    where = (flow.source_kind, flow.folder, flow.bucket, flow.prefix)
    return (id(services), domain_name, flow.name, *where)


def list_source(
    source: FlowSource,
    *,
    clock: Callable[[], float] = time.monotonic,
    waiting: Callable[[], None] | None = None,
    key: Hashable | None = None,
    patience: float | None = None,
) -> list[SourceItem]:
    """`source.items()`, listed in a thread of its own while this one waits, calling `waiting`
    every RENEW_EVERY (a run renews its claim); ListingStuck (LISTING_HUNG) once the listing
    has gone on for LISTING_LIMIT by `clock`. A listing cannot be interrupted (a call blocked on
    a hung network mount, an endpoint paging for ever): it is left to its thread, which ends
    when it does, its result unused. While a listing of `key` (`listing_key`) left so goes on,
    another is not begun: ListingStuck (LISTING_BUSY) at once (ListingBusy, saying the same,
    while one of another thread goes on within its time).

    `patience` (seconds; an Event check's, EVENT_CHECK_WAIT): the longest this caller waits. A
    listing of `key` not ended by then is left to its thread (ListingPending; ListingStuck if
    it has gone on for LISTING_LIMIT already), and what it lists, once it ends, is kept for
    the next call of `key` with a `patience`, which takes it instead of listing (`_LISTED`)."""
    listed: list[list[SourceItem]] = []
    failed: list[BaseException] = []
    ended = threading.Event()
    since = datetime.now(UTC)
    entry = _Listing(since, clock, clock())

    def listing() -> None:
        try:
            listed.append(source.items())
        except BaseException as exc:  # raised in the waiting thread, as if listed there
            failed.append(exc)
        finally:
            # Before `ended`: a listing that returned in time is over for the next one to begin.
            if key is not None:
                with _LISTINGS_LOCK:
                    if _LISTINGS.get(key) is entry:
                        del _LISTINGS[key]
                    if entry.kept:
                        _LISTED[key] = (listed[0] if listed else [], failed[0] if failed else None)
            ended.set()

    if key is not None:
        with _LISTINGS_LOCK:
            # A listing left by an Event check has ended since: its outcome is the next check's
            # (a run lists afresh).
            outcome = _LISTED.pop(key, None)
            if outcome is not None and patience is not None:
                if outcome[1] is not None:
                    raise outcome[1]
                return outcome[0]
            if (busy := _LISTINGS.get(key)) is not None:
                # Stuck when left, or going on, past LISTING_LIMIT; else another thread's,
                # going on within its time.
                busy.left = busy.left or busy.past_limit()
                raise (ListingStuck if busy.left else ListingBusy)(
                    LISTING_BUSY.format(
                        since=busy.since.isoformat(timespec="seconds"),
                        limit=duration(LISTING_LIMIT),
                    )
                )
            _LISTINGS[key] = entry
    try:
        threading.Thread(target=listing, name="flow-listing", daemon=True).start()
    except BaseException:
        # No thread (the process is out of them): nothing lists it.
        if key is not None:
            with _LISTINGS_LOCK:
                _LISTINGS.pop(key, None)
        raise
    if patience is not None and not ended.wait(patience):
        with _LISTINGS_LOCK:
            going_on = key is None or _LISTINGS.get(key) is entry
            if going_on:
                entry.left, entry.kept = entry.past_limit(), key is not None
        if going_on:
            message = LISTING_HUNG if entry.left else LISTING_PENDING
            raise (ListingStuck if entry.left else ListingPending)(
                message.format(
                    limit=duration(LISTING_LIMIT), since=since.isoformat(timespec="seconds")
                )
            )
        # Else it ended as it was being left (its thread is setting `ended`): its outcome is
        # this caller's.
    while not ended.wait(RENEW_EVERY.total_seconds()):
        if entry.past_limit():
            if key is not None:
                with _LISTINGS_LOCK:
                    entry.left = True
            raise ListingStuck(
                LISTING_HUNG.format(
                    limit=duration(LISTING_LIMIT), since=since.isoformat(timespec="seconds")
                )
            )
        if waiting is not None:
            waiting()
    if failed:
        raise failed[0]
    return listed[0]


# When each flow's Event check last warned that its source's listing is stuck (`warn_stuck`), by
# `listing_key`, in time.monotonic seconds.
_STUCK_WARNED: dict[Hashable, float] = {}


def warn_stuck(services: Services, domain_name: str, flow: Flow) -> None:
    """Log that the Event flow was not checked, its source's listing stuck (ListingStuck): at
    most once per LISTING_LIMIT per flow (the watcher checks every few seconds), naming only the
    flow and its domain (a folder's path or a bucket's key can be personal data)."""
    key = listing_key(services, domain_name, flow)
    at = time.monotonic()
    with _LISTINGS_LOCK:
        last = _STUCK_WARNED.get(key)
        if last is not None and at - last < LISTING_LIMIT.total_seconds():
            return
        _STUCK_WARNED[key] = at
    logger.warning(
        "Flow %s of domain %s was not checked for new items: a listing of its source has not "
        "ended within %s, and it is not listed again until that listing returns. Check that "
        "its folder or bucket answers (a hung network mount, an endpoint that never answers).",
        flow.name,
        domain_name,
        duration(LISTING_LIMIT),
    )


def drop(gone: Callable[[Hashable], bool]) -> None:
    """Drop what is kept for the flows `gone` says are (flows.service `_drop_gone_flows`): what
    the listings an Event check left to their thread listed (`_LISTED`), and when its warnings of
    stuck listings were logged (`_STUCK_WARNED`)."""
    with _LISTINGS_LOCK:
        for kept in (_LISTED, _STUCK_WARNED):
            for key in [key for key in kept if gone(key)]:
                del kept[key]
