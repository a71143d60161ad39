"""What a flow's item checkpoint (flow_item.version) says, and how a run reads it: which items an
incremental run reads, and which of an item's records it applies.

A checkpoint is one of:

* the item's version (its ETag, its mtime and size): read whole in that version, done;
* PARTIAL_MARK: begun and not finished — how many of its records were applied in committed
  batches (a run resumes it after them);
* CRASHED_MARK: begun, and runs in a row stopped on it with an unexpected error — how many, and
  after how many of its records (resumed as a PARTIAL_MARK item is; its `CRASH_ATTEMPTS`-th
  attempt reads it carefully, flows.crashes);
* FAILED_MARK: failed (dead-lettered) — with what of that version was not applied (`Unapplied`:
  the records after where its reading stopped, and those set aside one by one), which a run asked
  for applies, and only those.

Records are known by their positions (from 1, in the order flows.items hands out records and
BadRecords). Every mark ends with the version of the content it counts: a checkpoint of another
version says nothing of the item's content now, which is read whole, as a new item.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from openprofiles.flows.sources import SourceItem, is_unreadable

# The checkpoint version of an item that failed starts with this, followed by the item's version
# ("failed:<etag>") when nothing of it is known applied, or by what of it was not applied, then
# the version ("failed:1500:7,12-14:<etag>": the records after its first 1500, and those at
# positions 7 and 12 to 14, set aside; `Unapplied`): not pending for automatic runs, and read
# again by a run asked for, which applies only those records (flows.runner's docstring).
FAILED_MARK = "failed:"
# The checkpoint version of an item begun and not finished: this, the number of its records
# (records and BadRecords, in the order flows.items hands them out) applied in committed
# batches, ":", and the version of the content read ("partial:1500:<etag>"). Written with each
# batch, in its transaction; no run takes it for the item read (so the item stays pending), and
# an incremental run resumes the item after those records when the content is that version.
PARTIAL_MARK = "partial:"
# How many runs in a row may stop on the same item with an unexpected error (a bug, a record that
# crashes the mapping: not ItemFailed, not a record the pipeline rejects) before it is set aside.
# Not 1: the error may pass (a worker restarted mid-batch, a database failing over), and a
# record would be dead-lettered for nothing; not many: until then every run of the flow stops at
# the item, and the items after it wait. The last attempt reads it carefully (flows.crashes).
CRASH_ATTEMPTS = 3
# The checkpoint version of an item runs stopped on with an unexpected error: this, how many
# runs in a row did, ":", how many of its records were applied (as PARTIAL_MARK), ":", and the
# version of the content read ("crashed:2:1500:<etag>"). Pending, and resumed, as a PARTIAL_MARK
# item is; a run that gets past the record it stopped on writes PARTIAL_MARK over it again.
CRASHED_MARK = "crashed:"


def is_pending(checkpoint: str | None, item: SourceItem) -> bool:
    """Whether an incremental run reads the item: never read, changed since, or begun and not
    finished (a PARTIAL_MARK checkpoint). A failed item is not (FAILED_MARK), unless changed;
    nor is one read before that cannot be looked at now (`unreadable_read_before`)."""
    if unreadable_read_before(checkpoint, item):
        return False
    return checkpoint != item.version and failed_plan(checkpoint, item.version) is None


def unreadable_read_before(checkpoint: str | None, item: SourceItem) -> bool:
    """Whether the item cannot be looked at now (flows.sources.UNREADABLE_VERSION) and a run has
    read it before (it has a checkpoint, whatever it says): automatic runs pass it over. That it
    cannot be looked at says nothing of a change — a folder's x permission taken away for a
    while, a network mount answering EIO — and reading it would only dead-letter it and write
    "failed:unreadable" over its checkpoint, so that, looked at again, it was read a second
    time, unchanged (or, begun and not finished, from its start, its older records applied over
    what came since). Passed over, its checkpoint stays: the item is read when it can be looked
    at again and its version changed, or resumed if it was begun. An item never read is not
    passed over: it is read, and dead-lettered saying why (nothing of it lost without a word);
    then, failed as unreadable, it is read again by a run asked for (FAILED_MARK)."""
    return checkpoint is not None and is_unreadable(item.version)


@dataclass(frozen=True)
class Unapplied:
    """The records of an item's content not applied yet, by their positions (from 1, in the
    order flows.items hands out records and BadRecords, as PARTIAL_MARK counts them): every one
    after the first `at`, and those at `aside` among the first `at` (set aside on the item's
    last attempt, CRASH_ATTEMPTS: never applied). What a run reads of an item (`read_plan`),
    and what a failed item's checkpoint keeps (FAILED_MARK) for a run asked for to apply."""

    at: int = 0
    aside: frozenset[int] = frozenset()

    def wants(self, position: int) -> bool:
        return position > self.at or position in self.aside

    @property
    def done_before(self) -> int:
        """Up to which position every record is applied already."""
        return min(self.aside, default=self.at + 1) - 1

    def after(self, done: int, aside: Iterable[int] = ()) -> Unapplied:
        """What is left once a run has done the records wanted up to position `done`, those at
        `aside` (set aside by the run) left unapplied."""
        left = {p for p in self.aside if p > done} | set(aside)
        return Unapplied(max(self.at, done), frozenset(left))

    def failed_checkpoint(self, version: str) -> str:
        """The checkpoint of the item failed with these records of `version` not applied: every
        one set aside named, however many (flow_item.version is text: before 0040, 255
        characters named only some, and the records from the first one left unnamed on were
        applied again, those applied already among them)."""
        if not self.at and not self.aside:
            return FAILED_MARK + version
        return f"{FAILED_MARK}{self.at}:{_ranges(sorted(self.aside))}:{version}"


def _ranges(positions: list[int]) -> str:
    """Sorted positions as "3,7-9"."""
    runs: list[list[int]] = []
    for position in positions:
        if runs and position == runs[-1][1] + 1:
            runs[-1][1] = position
        else:
            runs.append([position, position])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def failed_plan(checkpoint: str | None, version: str) -> Unapplied | None:
    """What of the content of `version` a failed item's checkpoint says was not applied (all
    of it for "failed:<version>"); None when the checkpoint is not the item failed in that
    version."""
    if checkpoint is None or not checkpoint.startswith(FAILED_MARK):
        return None
    rest = checkpoint[len(FAILED_MARK) :]
    if rest == version:
        return Unapplied()
    if not rest.endswith(":" + version):
        return None
    at, _, named = rest[: len(rest) - len(version) - 1].partition(":")
    aside: set[int] = set()
    for part in filter(None, named.split(",")):
        first, _, last = part.partition("-")
        if not first.isdigit() or not (last or first).isdigit():
            return None
        aside.update(range(int(first), int(last or first) + 1))
    return Unapplied(int(at), frozenset(aside)) if at.isdigit() else None


def read_plan(checkpoint: str | None, version: str, *, read_all: bool) -> Unapplied:
    """What of the content of `version` a run applies, the item checkpointed `checkpoint`: all
    of it when the run reads every item or the item is new or changed; what a failed item's
    checkpoint says was not applied (FAILED_MARK); the records after those a run that stopped
    applied (PARTIAL_MARK, CRASHED_MARK)."""
    if read_all:
        return Unapplied()
    if (unapplied := failed_plan(checkpoint, version)) is not None:
        return unapplied
    return Unapplied(resume_after(checkpoint, version))


def resume_after(checkpoint: str | None, version: str) -> int:
    """How many of the item's records a run applied already when its checkpoint says it
    began the content of `version` and did not finish it (PARTIAL_MARK, CRASHED_MARK); 0
    otherwise (not begun, finished, or changed since: read from its start)."""
    if (crashed := crashes_before(checkpoint, version)) is not None:
        return crashed.at
    if checkpoint is None or not checkpoint.startswith(PARTIAL_MARK):
        return 0
    taken, _, of_version = checkpoint[len(PARTIAL_MARK) :].partition(":")
    return int(taken) if of_version == version and taken.isdigit() else 0


def partial_checkpoint(taken: int, version: str) -> str:
    """The PARTIAL_MARK checkpoint of the records of `version` up to position `taken` applied."""
    return f"{PARTIAL_MARK}{taken}:{version}"


@dataclass(frozen=True)
class Crashes:
    """What an item's CRASHED_MARK checkpoint says: `attempts` runs in a row stopped on it with
    an unexpected error, the last `at` records into it (the records before were applied)."""

    attempts: int
    at: int


def crashes_before(checkpoint: str | None, version: str) -> Crashes | None:
    """The runs that stopped on the content of `version` (CRASHED_MARK), or None."""
    if checkpoint is None or not checkpoint.startswith(CRASHED_MARK):
        return None
    attempts, _, rest = checkpoint[len(CRASHED_MARK) :].partition(":")
    at, _, of_version = rest.partition(":")
    if of_version != version or not attempts.isdigit() or not at.isdigit():
        return None
    return Crashes(int(attempts), int(at))


def crashed_checkpoint(prior: Crashes | None, applied: int, version: str) -> str:
    """The CRASHED_MARK checkpoint of a run that stopped on the content of `version` with an
    unexpected error, its records up to position `applied` done; `prior`: what the item's
    checkpoint said of the runs before. A run that got past where they stopped starts the
    count afresh (it met another error)."""
    if prior is not None and applied > prior.at:
        prior = None
    attempts = (prior.attempts if prior is not None else 0) + 1
    at = max(applied, prior.at if prior is not None else 0)
    return f"{CRASHED_MARK}{attempts}:{at}:{version}"
