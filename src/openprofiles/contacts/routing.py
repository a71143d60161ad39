"""What a contact record is routed by, looked up per batch: the domain its instance is
associated with and whether that domain can take records now (`Router`), and what is applied
in a domain for a contact, by the blind-index digest of its ContactId (`contact_digest`,
`applied_states`: the `contact_record` rows spec §3.1's dedupe is decided on).

Below the intake (contacts.service), the move routing (contacts.moves) and the sweep
(contacts.sweep), which all route by them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, select

from openprofiles.contacts.links import CONTACT_KEY
from openprofiles.context import Tx
from openprofiles.errors import InternalServer, ServiceError
from openprofiles.integrations.models import Integration
from openprofiles.integrations.service import find_instance_integration, lock_instances
from openprofiles.normalize import ContentType, normalize
from openprofiles.store.in_lists import in_chunks
from openprofiles.store.prepared import PreparedRead
from openprofiles.store.schema import contact_record


class Router:
    """Instance → integration, and whether a domain can take records now, looked up once per
    batch. `keeping`: for a writer of contact records, which looks the instances up under their
    association locks (`look_up`): the intake, which keeps the records of an instance it finds
    associated with no domain, and a contact-start event."""

    def __init__(self, tx: Tx, *, keeping: bool = False) -> None:
        self._tx = tx
        self._keeping = keeping
        self._cache: dict[str, Integration | None] = {}
        self._unavailable: dict[str, str | None] = {}
        self._errors: dict[str, ServiceError] = {}

    def __call__(self, instance_arn: str) -> Integration | None:
        if instance_arn not in self._cache:
            self.look_up([instance_arn])
        return self._cache[instance_arn]

    def look_up(self, instance_arns: Iterable[str]) -> None:
        """Look up the instances not looked up yet. When `keeping`, under their association
        locks, taken shared in one go first (integrations.service.lock_instances): an
        association, a dissociation or a DeleteDomain under way is committed by then, and one
        not yet begun waits until the batch has committed. So the batch routes each instance's
        records to a domain that stays until it commits, or finds the instance associated with
        no domain and keeps them (and an association replays them), never routes them to a
        domain gone in between."""
        new = [arn for arn in dict.fromkeys(instance_arns) if arn not in self._cache]
        if self._keeping and new:
            lock_instances(self._tx, new, shared=True)
        for arn in new:
            self._cache[arn] = find_instance_integration(self._tx, instance_arn=arn)

    def unavailable(self, domain_name: str) -> str | None:
        """Why the domain cannot take records now (its key disabled, revoked or its KMS out of
        reach: nothing of it can be sealed, its dead-letter store included), or None."""
        if domain_name not in self._unavailable:
            try:
                # Cached in the transaction once it succeeds: the batch uses this cipher.
                self._tx.cipher(domain_name)
                self._unavailable[domain_name] = None
            except ServiceError as exc:
                self._unavailable[domain_name] = (
                    f"{exc.message.rstrip('.')}. The record is kept, and sent on to the domain "
                    "once it can take it."
                )
                self._errors[domain_name] = exc
        return self._unavailable[domain_name]

    def out_for_now(self, domain_name: str) -> ServiceError | None:
        """The error of a domain whose key cannot be used only for now (its KMS does not
        answer: an InternalServerException, domains.service.domain_cipher; it may come back by
        itself), or None: its key can be used, or is refused (disabled, deleted, access
        revoked)."""
        self.unavailable(domain_name)
        error = self._errors.get(domain_name)
        return error if isinstance(error, InternalServer) else None


@dataclass(frozen=True)
class State:
    """What is applied for a contact, as the batch has left it so far (`object_type_name`: the
    type its record is stored as)."""

    last_update: datetime | None
    partial: bool
    profile_id: str | None
    object_type_name: str
    # When it was applied: a start event's profile created at that instant is the event's own
    # (contacts.service `_drop_event_profile`).
    received_at: datetime | None = None


def contact_digest(tx: Tx, domain_name: str, contact_id: str) -> bytes:
    """The blind-index digest of a ContactId, as the pipeline indexes `_ctrContactId`."""
    return tx.cipher(domain_name).digest(CONTACT_KEY, normalize(ContentType.STRING, contact_id))


def applied_states(tx: Tx, domain_name: str, digests: Sequence[bytes]) -> dict[bytes, State]:
    wanted = sorted(set(digests))
    out: dict[bytes, State] = {}
    for chunk in in_chunks(wanted):
        for row in _SEEN.rows(tx.conn, {"d": domain_name, "gs": chunk}):
            out[bytes(row.contact_digest)] = State(
                row.last_update, row.partial, row.profile_id, row.object_type_name, row.received_at
            )
    return out


# Built once, and run per batch of records on the driver (store.prepared): through SQLAlchemy's
# execution path it and contacts.service's _UPSERT and _LINKED were a tenth of the
# contact-record loader's time.
_SEEN = PreparedRead(
    select(
        contact_record.c.contact_digest,
        contact_record.c.last_update,
        contact_record.c.partial,
        contact_record.c.profile_id,
        contact_record.c.object_type_name,
        contact_record.c.received_at,
    ).where(
        contact_record.c.domain_name == bindparam("d"),
        contact_record.c.contact_digest.in_(bindparam("gs", expanding=True)),
    )
)
