"""The kept records waiting for a contact they continue (contacts.links): which of them a batch
wakes, and where they wait when their instance moves to another domain.

A batch that applies a contact to a profile sends on, in its own transaction, the records that
wait for it (contacts.service `_wake`), so a transfer leg or a task is on the profile as soon as
its contact is, not up to a sweep later, and a file loaded out of order resolves within the
load; so does an agent's link of the contact (AddProfileKey `_ctrContactId`: `_wake_linked`).
They are found by `contact_awaited`'s primary key (domain, contact digest), never by a scan of
the kept-records store. The sweep (`send_waiting_on`) is left with records that waited long
enough and those a sender skipped because another held them.

A record waits in the domain it was routed to, by the digests of that domain's key. When its
instance moves to another domain (contacts.service.connect_instance with `move`), its
contacts come to the new domain (a move moves no profiles: only what comes next goes there),
and so will it when it is sent on (by its instance): it waits there from then on, by the new
domain's digests (`waiting_of_instance`, `wait_in`), for the rest of its time, counted from
when it was first kept. Left waiting in the old domain, no contact would ever send it on, and
the sweep would dead-letter it in the new domain after the hour. A batch that routed a record
to the old domain just before the move committed keeps it waiting there after the move
moved the others: the sweep moves such strays (`strays`) before it looks for records to send
on, so they wait a minute at most where no contact comes, with no cost to any batch. A contact
that goes to the old domain after the move all the same (a leg of a contact applied there:
contacts.moves `applied_where_moved_from`) sends on the records waiting for it in the
instance's domain too, and they follow it there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from sqlalchemy import bindparam, delete, select

from openprofiles.context import Tx
from openprofiles.store.in_lists import in_chunks
from openprofiles.store.prepared import PreparedRead
from openprofiles.store.schema import contact_awaited, integration, unrouted_contact_record

# Whether any record waits for some of the contacts. Asked by every batch, start event and link,
# and almost always answered "none": so it runs prepared (store.prepared), and the query that
# locks the records is built only when some wait. Built each time, that query made a start
# event 0.35 ms (a third) slower.
_ANY_AWAITED = PreparedRead(
    select(contact_awaited.c.message_id)
    .where(
        contact_awaited.c.domain_name == bindparam("domain_name"),
        contact_awaited.c.contact_digest.in_(bindparam("digests", expanding=True)),
    )
    .limit(1)
)


def waiting_for(
    tx: Tx, applied: Mapping[str, Iterable[bytes]], *, limit: int | None = None
) -> list[str]:
    """The message ids of the kept records waiting for any of the `applied` contacts (domain →
    contact digests), oldest first (the `limit` oldest, when given). Their rows are locked to
    the end of the transaction, and on PostgreSQL those another transaction holds are skipped:
    that one (a sweep, another batch) is sending them on, so no record is sent on twice, and a
    batch never waits for a sweep that waits for the batch's contacts (its intake takes their
    locks). With `limit`, a query's rows past it are neither read nor locked (a few of another
    query's, its oldest, may be locked and left)."""
    kept = unrouted_contact_record.c
    found: dict[str, datetime] = {}
    for domain_name, digests in applied.items():
        for chunk in in_chunks(sorted(set(digests))):
            if not _ANY_AWAITED.tuples(tx.conn, {"domain_name": domain_name, "digests": chunk}):
                continue
            awaited = select(contact_awaited.c.message_id).where(
                contact_awaited.c.domain_name == domain_name,
                contact_awaited.c.contact_digest.in_(chunk),
            )
            query = (
                select(kept.message_id, kept.created_at)
                .where(kept.message_id.in_(awaited))
                .order_by(kept.created_at, kept.message_id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
            found.update((row.message_id, row.created_at) for row in tx.conn.execute(query))
    return sorted(found, key=lambda message_id: (found[message_id], message_id))[:limit]


def waiting_of_instance(tx: Tx, *, instance_arn: str, domain_name: str) -> list[str]:
    """The message ids of the instance's kept records waiting in `domain_name`, locked to the
    end of the transaction (a sweep sending one on meanwhile has it, and it is left out)."""
    kept = unrouted_contact_record.c
    awaited = select(contact_awaited.c.message_id).where(
        contact_awaited.c.domain_name == domain_name
    )
    query = (
        select(kept.message_id)
        .where(kept.instance_arn == instance_arn, kept.message_id.in_(awaited))
        .order_by(kept.created_at, kept.message_id)
        .with_for_update(skip_locked=True)
    )
    return list(tx.conn.execute(query).scalars())


def strays(tx: Tx) -> list[tuple[str, str, str]]:
    """(instance ARN, the domain its records wait in, the instance's domain now) for each
    instance with kept records waiting in a domain it is no longer associated with (one it was
    moved away from: see the module); those of an instance associated with none are left."""
    kept = unrouted_contact_record.c
    query = (
        select(kept.instance_arn, contact_awaited.c.domain_name, integration.c.domain_name)
        .distinct()
        .select_from(contact_awaited)
        .join(unrouted_contact_record, kept.message_id == contact_awaited.c.message_id)
        .join(integration, integration.c.instance_arn == kept.instance_arn)
        .where(integration.c.domain_name != contact_awaited.c.domain_name)
    )
    return [(row[0], row[1], row[2]) for row in tx.conn.execute(query)]


def wait_in(tx: Tx, waiting: Sequence[tuple[str, str, Sequence[bytes]]]) -> None:
    """Make kept records (message id, domain, digests of the contacts that would place it)
    wait in that domain for those contacts, and no longer wherever they waited before; one
    given no digests waits no more (a plain kept record, sent on with the held ones)."""
    for chunk in in_chunks([message_id for message_id, _, _ in waiting]):
        tx.conn.execute(delete(contact_awaited).where(contact_awaited.c.message_id.in_(chunk)))
    rows = [
        {"domain_name": domain_name, "contact_digest": digest, "message_id": message_id}
        for message_id, domain_name, digests in waiting
        for digest in dict.fromkeys(digests)
    ]
    if rows:
        tx.conn.execute(contact_awaited.insert(), rows)
