"""The checkpoints an Event check read, kept in the process for the flow's next check.

`flows watch` checks every Event flow every few seconds, and a check looks every listed item up in
the flow's checkpoints (flow_item): reading them all took about 32 ms at 17,000 items, every
pass, though they had mostly not changed since the last. So a check keeps what it read, with the
flow's `Stamp`, and the next check that finds the same stamp takes them instead of reading them
again: one row read instead of all of them.

Why the stamp is enough: `integration.flow_item_changes` is bumped in the transaction of every
change of the flow's flow_item rows (flows.checkpoint_store `_items_changed`: a run's
checkpoints, its forgetting of gone items, a crash counted), by every other update of the
integration's row (its column's `onupdate`: PutIntegration renaming the flow deletes its
checkpoints, and those of the name it takes, in that update's transaction), and the flow's other
deletions go with its row (DeleteIntegration, DeleteDomain), which a flow put again under the
name makes anew, with another `created_at` (and a count from 0: the stamp is the row's identity
with the count). A change commits with its bump, in any process or host: a stamp read as it was
read before says that no change committed since. The stamp is read before the checkpoints, in
the same transaction: on PostgreSQL each statement sees the changes committed before it began,
so checkpoints read after a change that committed between the two are kept under the older
stamp, and the next check, finding a newer one, reads them again — never the other way round.

What is kept decides nothing the database would not: a check that finds another stamp, or none
kept, reads the checkpoints as before. Kept per flow (by the process's Services, the domain and
the flow), `KEPT_ROWS` in all (the flows checked longest ago dropped first), and dropped with the
flow (`drop`)."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from openprofiles.context import Tx
from openprofiles.flows.kept import KeptPerFlow
from openprofiles.store.schema import integration

# The most checkpoints kept, all flows together (a digest and a version: about 150 bytes, so
# some 40 MB at most); a flow with more is read every check, as before.
KEPT_ROWS = 250_000


@dataclass(frozen=True)
class Stamp:
    """The flow's integration row (its Uri and creation: one deleted and put again is another)
    and the count of the changes of its checkpoints."""

    uri: str
    created_at: datetime
    changes: int


def stamp(tx: Tx, domain_name: str, flow_name: str) -> Stamp | None:
    """The flow's stamp now; None when the flow is gone."""
    row = tx.conn.execute(
        select(integration.c.uri, integration.c.created_at, integration.c.flow_item_changes).where(
            integration.c.domain_name == domain_name, integration.c.flow_name == flow_name
        )
    ).first()
    return None if row is None else Stamp(row.uri, row.created_at, row.flow_item_changes)


def cached(flow: Hashable, now: Stamp | None) -> dict[bytes, str] | None:
    """The checkpoints kept for `flow` under the stamp `now`, or None (none kept, or kept under
    another: read them)."""
    return None if now is None else _KEPT.get(flow, now)


def keep(flow: Hashable, read_under: Stamp | None, done: dict[bytes, str]) -> None:
    """Keep the checkpoints `done`, read after the stamp `read_under` (module docstring), for the
    flow's next check. Not kept (and the flow's older ones dropped) beyond KEPT_ROWS."""
    if read_under is None:
        _KEPT.forget(flow)
    else:
        _KEPT.put(flow, read_under, done)


def drop(gone: Callable[[Hashable], bool]) -> None:
    """Drop what is kept for the flows `gone` says are (flows.service `_drop_gone_flows`)."""
    _KEPT.drop(gone)


# By flow: the stamp the checkpoints were read under, and the checkpoints (item digest: version).
_KEPT: KeptPerFlow[Stamp, dict[bytes, str]] = KeptPerFlow(KEPT_ROWS)
