"""A flow's item checkpoints as stored (flow_item): read (`Checkpoints`), written
(`store_checkpoint`), and forgotten for the items gone from the source (`forget`); what a
checkpoint says is flows.checkpoints'.

A checkpointed item is known by a blind-index digest of its key (flows.item_keys): an object key
or file name can carry a customer's name or email, and the checkpoint only has to tell whether a
listed key was read, and in which version. An Event check reads the flow's checkpoints only when
they changed since its previous check, in any process (flows.check_cache: `_items_changed` counts
each change in its transaction).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from openprofiles.context import Services, Tx
from openprofiles.flows import check_cache
from openprofiles.flows.item_keys import ItemDigests, item_digest
from openprofiles.flows.sources import SourceItem
from openprofiles.store.schema import flow_item, integration

# Digests deleted a statement (`forget`): well within every backend's limit of parameters.
FORGET_CHUNK = 500


class Checkpoints:
    """The version each item of the flow was checkpointed under (None for an item never read),
    as the database says when read; the items' digests from those kept since the flow's last
    listing in this process (flows.item_keys), and kept for its next once `keep()` is called
    with the items of a listing looked up."""

    def __init__(
        self, services: Services, domain_name: str, flow_name: str, *, reuse: bool = False
    ) -> None:
        """`reuse`: take the checkpoints the flow's previous check read when none changed
        since (flows.check_cache), and keep these for its next; a run reads them afresh."""
        flow = (id(services), domain_name, flow_name)
        with services.read() as tx:
            self._digests = ItemDigests(flow, tx.cipher(domain_name))
            # Read before the checkpoints (flows.check_cache: why that order is safe).
            stamp = check_cache.stamp(tx, domain_name, flow_name) if reuse else None
            done = check_cache.cached(flow, stamp)
            if done is None:
                rows = tx.conn.execute(
                    select(flow_item.c.item_digest, flow_item.c.version).where(
                        flow_item.c.domain_name == domain_name, flow_item.c.flow_name == flow_name
                    )
                )
                done = {bytes(r.item_digest): r.version for r in rows}
                if reuse:
                    check_cache.keep(flow, stamp, done)
        self._done = done

    def __call__(self, item: SourceItem) -> str | None:
        return self._done.get(self._digests.digest(item.key))

    def gone(self, listed: list[SourceItem]) -> list[bytes]:
        """The digests of the items checkpointed that the listing does not hold."""
        present = {self._digests.digest(item.key) for item in listed}
        return [digest for digest in self._done if digest not in present]

    def keep(self) -> None:
        self._digests.keep()


def store_checkpoint(tx: Tx, domain_name: str, flow_name: str, key: str, checkpoint: str) -> None:
    """Store the item's checkpoint: its version read, FAILED_MARK or PARTIAL_MARK with it."""
    statement: Any = (
        sqlite_insert(flow_item) if tx.services.database.is_sqlite else pg_insert(flow_item)
    )
    tx.conn.execute(
        statement.on_conflict_do_update(
            index_elements=["domain_name", "flow_name", "item_digest"],
            set_={"version": statement.excluded.version, "processed_at": tx.now},
        ),
        {
            "domain_name": domain_name,
            "flow_name": flow_name,
            "item_digest": item_digest(tx.cipher(domain_name), key),
            "version": checkpoint,
            "processed_at": tx.now,
        },
    )
    _items_changed(tx, domain_name, flow_name)


def _items_changed(tx: Tx, domain_name: str, flow_name: str) -> None:
    """Count a change of the flow's checkpoints, in its transaction (flows.check_cache: an Event
    check reads them again). On PostgreSQL the run's transaction holds the integration's row
    shared already (`hold`), and only the run holding the flow writes its checkpoints, so this
    waits for no other run; DeleteIntegration and PutIntegration wait for it, as for `hold`."""
    tx.conn.execute(
        update(integration)
        .where(integration.c.domain_name == domain_name, integration.c.flow_name == flow_name)
        .values(flow_item_changes=integration.c.flow_item_changes + 1)
    )


def forget(tx: Tx, domain_name: str, flow_name: str, digests: list[bytes]) -> None:
    """Delete the checkpoints of the items gone from the flow's source (flows.runner)."""
    for at in range(0, len(digests), FORGET_CHUNK):
        tx.conn.execute(
            delete(flow_item).where(
                flow_item.c.domain_name == domain_name,
                flow_item.c.flow_name == flow_name,
                flow_item.c.item_digest.in_(digests[at : at + FORGET_CHUNK]),
            )
        )
    if digests:
        _items_changed(tx, domain_name, flow_name)
        # A digest of a file name or an object key, which can name a customer.
        tx.erased()
