"""The pages' password checks (sign-in, a user's change of their own password): each attempt is
counted by the throttle before its Argon2 runs (users.reserve_attempt), and the process runs at
most `verify_slots()` Argon2 verifications at once, on threads of their own.

Argon2 costs about 0.3 s of CPU and 64 MiB a verification, on purpose, and anyone can ask for
one: a sign-in needs no account. Run on Starlette's threadpool, which the API's requests share,
100 parallel sign-ins with made-up names ran 100 verifications (2.4 GB at the peak) and a
signed ListDomains waited seconds behind them. Now a burst from one address gets no more
verifications than the throttle still allows it, and a flood from many addresses no more at
once than the slots: an attempt that finds every slot taken is refused at once (Busy), given
back to the throttle (nothing was checked) and not queued. One slot a CPU (at least two, at
most eight): Argon2 keeps a CPU busy, so more at once would only make each slower and take
64 MiB more.

The attempt is counted (users.reserve_attempt, a write under the throttle's locks, where a
locked-out one is refused) before it takes a slot, and a read with no lock refuses a locked-out
one before that: a slot is held while Argon2 runs, never while its attempt waits for the
database. Slot first, an address locked out (every attempt refused 429) held the slots with
attempts queued on that write, and real users' sign-ins were refused 503 meanwhile. Counted
first, a refusal for want of a slot costs two short writes (the count and its hand-back) where
it cost none; that is the price of never holding a slot on a wait. The read alone would not do:
attempts that read before the lock was set would still queue on the write holding slots, as
would every attempt behind another writer (SQLite's one writer lock).

A full house is answered 503 Service Unavailable with Retry-After, not 429: it says this server
is busy for everyone, which it is, and not that this client or this name asked too often (the
throttle's refusals are the 429s, and a person reading one is told to wait minutes, not a
moment).
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from starlette.datastructures import FormData

from openprofiles.ui.web import UI
from openprofiles.users import service as users

# What a Busy answer's Retry-After says, in seconds: about as long as a verification takes.
RETRY_AFTER_SECONDS = 1
BUSY_MESSAGE = "The server is busy checking other passwords. Wait a moment and try again."
MAX_SLOTS = 8


def form_password(form: FormData, name: str) -> str:
    """A password field as typed (never trimmed: spaces may be part of it); "" when missing."""
    value = form.get(name)
    return value if isinstance(value, str) else ""


class Busy(Exception):
    """Every verification slot of the process was taken: nothing was counted or checked."""


@functools.cache
def verify_slots() -> int:
    """How many Argon2 verifications the process runs at once: one a CPU it may use, at least
    two, at most MAX_SLOTS (the module docstring says why)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return min(max(cpus, 2), MAX_SLOTS)


@functools.cache
def _slots() -> threading.BoundedSemaphore:
    return threading.BoundedSemaphore(verify_slots())


@functools.cache
def _executor() -> ThreadPoolExecutor:
    # As many threads as slots: a verification that holds a slot never waits for a thread.
    return ThreadPoolExecutor(max_workers=verify_slots(), thread_name_prefix="argon2")


async def check_password(
    ui: UI, *, username: str, password: str, address: str | None
) -> users.PasswordCheck:
    """`password` checked for `username` signing in from `address`, for `users.sign_in` (or
    `users.change_own_password`, `users.confirm_password`) to settle: Throttling, with no
    Argon2 run and no slot taken, when the name or the address is locked; else the attempt
    counted, then verified on the Argon2 threads. Busy, with the attempt given back, when the
    process already runs its most verifications."""
    # A read first, with no lock: a locked-out client's attempts are refused here, and do not
    # queue on the write below (one writer on SQLite, the subjects' locks on PostgreSQL).
    await ui.read(lambda tx: users.refuse_locked_attempt(tx, username=username, address=address))
    # Counted before a slot is taken: a slot is held only while Argon2 runs, never while its
    # attempt waits for the database (the lock could have been set since the read, which is
    # why this write decides, under the throttle's locks).
    reserved = await ui.write(
        lambda tx: users.reserve_attempt(tx, username=username, address=address)
    )
    slots = _slots()
    if not slots.acquire(blocking=False):
        # Nothing was checked: the attempt is not a failure either.
        await ui.write(lambda tx: users.hand_back_attempt(tx, reserved))
        raise Busy
    try:
        # The slot is freed by the thread when Argon2 ends, not here: a request that goes away
        # meanwhile does not free it while the hash still runs.
        verifying = _executor().submit(_verify_then_free, reserved, password)
    except BaseException:
        slots.release()
        raise
    # Shielded: a cancelled request must not cancel a verification not started yet, whose
    # thread would then never free its slot.
    return await asyncio.shield(asyncio.wrap_future(verifying))


def _verify_then_free(reserved: users.ReservedAttempt, password: str) -> users.PasswordCheck:
    try:
        return users.verify_reserved(reserved, password)
    finally:
        _slots().release()
