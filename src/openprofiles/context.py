"""What a request works with: the application's services and a unit of work.

`Services` is built once by `create_app(settings)` (database, key manager, token codec).
`Tx` is one transaction: feature services take it as their first argument and never commit;
the handler that opened it (through `RequestContext.read()`/`.write()`) owns it. Work that must
not hold a transaction open (network calls) is queued with `Tx.after_commit` and runs once the
transaction has committed; a rolled-back transaction drops it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from openprofiles.blocking import avoid_blocking, loop_request
from openprofiles.errors import InternalServer
from openprofiles.settings import Settings
from openprofiles.store.conflicts import not_restartable
from openprofiles.store.database import Database, PinnedConnection

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from openprofiles.auth.scope import DomainScope
    from openprofiles.crypto.domain_keys import DomainCipher, KeyManager
    from openprofiles.wire.pagination import TokenCodec


@dataclass
class Services:
    settings: Settings
    database: Database
    keys: KeyManager
    tokens: TokenCodec

    def read(self) -> AbstractContextManager[Tx]:
        return _transaction(self, self.database.read())

    def write(self) -> AbstractContextManager[Tx]:
        return _transaction(self, self.database.write(), writing=True)

    @contextmanager
    def pinned(self) -> Iterator[PinnedServices]:
        """Transactions on one connection (Database.pinned): read, then write what was staged
        in temporary tables while reading."""
        with self.database.pinned() as pinned:
            yield PinnedServices(self, pinned)


@dataclass
class PinnedServices:
    services: Services
    connection: PinnedConnection

    def read(self) -> AbstractContextManager[Tx]:
        return _transaction(self.services, self.connection.read())

    def write(self) -> AbstractContextManager[Tx]:
        return _transaction(self.services, self.connection.write(), writing=True)


class CommitOutcomeUnknown(InternalServer):
    """The connection to the database was lost while the transaction committed: it may have
    been applied or not. Never run again on its own (store.conflicts): a repeat could apply it
    twice."""

    def __init__(self) -> None:
        super().__init__(
            "The connection to the database was lost while the request was being committed; it "
            "may or may not have been applied. Check before sending it again."
        )


@contextmanager
def _transaction(
    services: Services, connection: AbstractContextManager[Connection], *, writing: bool = False
) -> Iterator[Tx]:
    # An exception in the block rolls back and propagates out of the `with`, so the queued
    # actions below run only after a successful commit.
    committing = False
    try:
        with connection as conn:
            tx = Tx(conn=conn, services=services, writing=writing)
            yield tx
            committing = True
    except DBAPIError as exc:
        if committing and exc.connection_invalidated:
            # The type and traceback for the operator (logging_setup withholds the message).
            logger.error("connection lost while committing: %s", type(exc).__name__, exc_info=exc)
            raise CommitOutcomeUnknown() from exc
        raise
    # Committed: an action that writes (settling SQS sends) may meet a cold data key, and must
    # unwrap it where it is rather than have `retrying` run the committed request again.
    with not_restartable():
        tx.run_after_commit()


@dataclass
class Tx:
    """One transaction, with the clock reading taken once so a request sees one 'now'."""

    conn: Connection
    services: Services
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    # A write transaction: on SQLite it holds the one writer lock, on PostgreSQL row locks, so
    # nothing slow may happen in it that could happen before it (domains.service.domain_cipher).
    writing: bool = False
    _ciphers: dict[str, DomainCipher] = field(default_factory=dict)
    # Domain records read in this transaction (domains.service keeps it current), so the many
    # services a request touches look the domain up once.
    domain_cache: dict[str, Any] = field(default_factory=dict)
    # Run in order once the transaction has committed (see `after_commit`).
    after_commit_actions: list[Callable[[], None]] = field(default_factory=list)
    # Profiles written while profile-written hooks are held back (profiles.service.
    # hooks_after), as (domain name, record) in write order; None when they run at once.
    held_profile_writes: list[tuple[str, Any]] | None = None
    # Profile objects written so far: each row gets the next number as its write_order, as the
    # rows of one transaction share `now` (objects.service.write_objects).
    objects_written: int = 0
    # Contacts whose last object this transaction deleted, as (domain, object type, contact
    # digest) (contacts.erasure): a batch of contact records that evicted one of its own
    # contacts (MaxProfileObjectCount) does not write its delivery back (contacts.service).
    erased_contacts: set[tuple[str, str, bytes]] = field(default_factory=set)

    @property
    def settings(self) -> Settings:
        return self.services.settings

    def forget_domain(self, domain_name: str) -> None:
        """Drop what this transaction cached about a domain after its row changed."""
        self.domain_cache.pop(domain_name, None)
        self._ciphers.pop(domain_name, None)

    def after_commit(self, action: Callable[[], None]) -> None:
        """Run `action` after this transaction commits, outside it; never if it rolls back.

        For work that must not keep the transaction (on SQLite, the one writer) waiting, such as
        a call to a remote queue. The action runs in the caller's thread and must not raise: the
        transaction is already committed, and its caller would read an exception as failure.
        """
        # Such actions wait on the network: a request on the event loop runs again in a thread.
        avoid_blocking("an action after commit")
        if loop_request() is not None:
            # Still on the loop, so this request already has a write in a shared transaction
            # (store.group_commit), which commits after this one's block ends: an action run
            # then would run before its data is committed. No operation on the loop does this.
            raise RuntimeError("an action after commit, queued on the event loop after a write")
        self.after_commit_actions.append(action)

    def erased(self) -> None:
        """Say that this transaction deletes personal data: on SQLite the write-ahead log,
        which keeps the page images from before the delete, is emptied once it has committed
        (store.database.Database.request_truncate: the truncation waits for the writer lock
        this transaction holds). Cheap, and harmless if the transaction rolls back."""
        self.services.database.request_truncate()

    def run_after_commit(self) -> None:
        actions, self.after_commit_actions = self.after_commit_actions, []
        for action in actions:
            action()

    def cipher(self, domain_name: str) -> DomainCipher:
        """The domain's cipher; raises NotFound when the domain does not exist."""
        cached = self._ciphers.get(domain_name)
        if cached is None:
            from openprofiles.domains.service import domain_cipher

            cached = self._ciphers[domain_name] = domain_cipher(self, domain_name=domain_name)
        return cached


@dataclass(frozen=True)
class Principal:
    access_key_id: str
    role: str
    # The domains the key may act on (auth.scope); None: every domain.
    scope: DomainScope | None = None


@dataclass
class RequestContext:
    services: Services
    principal: Principal
    # Write transactions of this request that have committed: while there are none, a request
    # that lost a race (store.conflicts) can simply run again.
    committed_writes: int = 0

    def read(self) -> AbstractContextManager[Tx]:
        return self.services.read()

    @contextmanager
    def write(self) -> Iterator[Tx]:
        with self.services.write() as tx:
            yield tx
        self.committed_writes += 1
