"""The pages' password checks (sign-in, a user's change of their own password): each attempt is
counted by the throttle before its Argon2 runs (users.reserve_attempt), and the process runs at
most `verify_slots()` Argon2 verifications at once, on threads of their own.

Argon2 costs about 0.3 s of CPU and 64 MiB a verification, on purpose, and anyone can ask for
one: a sign-in needs no account. Run on Starlette's threadpool, which the API's requests share,
100 parallel sign-ins with made-up names ran 100 verifications (2.4 GB at the peak) and a
signed ListDomains waited seconds behind them. Now a burst from one address gets no more
verifications than the throttle still allows it, and a flood from many addresses no more at
once than the slots: an attempt that finds every slot taken is refused at once (Busy), neither
counted nor queued. One slot a CPU (at least two, at most eight): Argon2 keeps a CPU busy, so
more at once would only make each slower and take 64 MiB more.

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

from openprofiles.ui.web import UI
from openprofiles.users import service as users

# What a Busy answer's Retry-After says, in seconds: about as long as a verification takes.
RETRY_AFTER_SECONDS = 1
BUSY_MESSAGE = "The server is busy checking other passwords. Wait a moment and try again."
MAX_SLOTS = 8


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
    `users.change_own_password`) to settle: the attempt counted first (Throttling when locked,
    with no Argon2 run), then verified on the Argon2 threads. Busy, at once and with nothing
    counted, when the process already runs its most verifications."""
    slots = _slots()
    if not slots.acquire(blocking=False):
        raise Busy
    try:
        reserved = await ui.write(
            lambda tx: users.reserve_attempt(tx, username=username, address=address)
        )
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
