"""Re-wrapping domains' data keys under the active version of a rotated local key.

`openprofiles keys rotate` gives a local key new material (`Keyring.rotate`, or
`Keyring.activate` for a version added pending by `--no-rewrap`), then re-wraps here
the data key of each domain under that key. The data key itself stays the same, so no record is
sealed again, and a running server's cached cipher stays right (its cache is keyed by the
wrapped key, so it unwraps the new one once, after reading the keyring file again).

Each domain is re-wrapped in its own short transaction, stored only if the domain's wrapped key
is still the one that was re-wrapped (a concurrent UpdateDomain that changed the key wins), and
skipped when it already is under the active version with that version's fingerprint: running it
again after an interruption finishes the job. A pending version is never used here (it is not
active yet). A data key wrapped before versions (bare, no fingerprint) is re-wrapped even when
the active version is still 1, so that afterwards the start-up check can compare every domain's
fingerprint with the keyring. A data key whose header names a version the keyring lacks, or
holds other material for, is not skipped as done: it cannot be unwrapped here, and re-wrapping
stops with an error naming the domain and what to do.
"""

from __future__ import annotations

import logging

from sqlalchemy import select, update

from openprofiles.context import Services
from openprofiles.crypto.errors import KeyUnusable
from openprofiles.crypto.keyring import LocalKey
from openprofiles.crypto.providers import (
    LocalWrapHeader,
    local_wrap_header,
    local_wrap_version,
    other_material,
)
from openprofiles.domains.service import find_domain
from openprofiles.store.schema import domain

log = logging.getLogger(__name__)


def domains_under_key(services: Services, key: LocalKey) -> list[str]:
    """The names of the domains whose data key is wrapped under `key`, whichever identifier of
    it they were given (its ARN in any region or account, or alias/NAME)."""
    keyring = services.keys.resolver.keyring
    with services.read() as tx:
        # Few distinct identifiers, however many domains: matched here, not in SQL.
        key_ids = tx.conn.execute(select(domain.c.key_id).distinct()).scalars()
        ours = [k for k in key_ids if _names(keyring.lookup(k), key)]
        if not ours:
            return []
        query = select(domain.c.name).where(domain.c.key_id.in_(ours)).order_by(domain.c.name)
        return list(tx.conn.execute(query).scalars())


def rewrap_domain(services: Services, domain_name: str, key: LocalKey) -> bool:
    """Re-wrap the domain's data key under the active version of `key`. False when there was
    nothing to do: it already is under that version (with its fingerprint), or the domain was
    deleted or moved to another key since it was listed. KeyUnusable when its data key cannot
    be unwrapped (wrapped under a version this keyring lacks or holds other material for, a
    disabled key, a damaged data key), the domain named."""
    keyring = services.keys.resolver.keyring
    while True:
        with services.read() as tx:
            record = find_domain(tx, domain_name=domain_name)
        current = keyring.get(key.key_id)
        if record is None or current is None or not _names(keyring.lookup(record.key_id), key):
            return False
        if _rewrapped_already(local_wrap_header(record.wrapped_key), current):
            return False
        try:
            # Outside any transaction: unwrapping and the proof of the new wrapping take the time.
            rewrapped = services.keys.rewrap_domain_key(
                domain_name, record.key_id, record.wrapped_key, record.key_id
            )
        except KeyUnusable as exc:
            # The provider's message says what is wrong with the key and what to do; which
            # domain it was is known only here.
            raise KeyUnusable(
                f"The data key of the domain {domain_name} was not re-wrapped: {exc.message}",
                exc.problem,
            ) from None
        with services.write() as tx:
            stored = tx.conn.execute(
                update(domain)
                .where(
                    domain.c.name == domain_name,
                    domain.c.key_id == record.key_id,
                    domain.c.wrapped_key == record.wrapped_key,
                )
                .values(wrapped_key=rewrapped.wrapped)
            ).rowcount
            tx.forget_domain(domain_name)
        if stored:
            log.info(
                "re-wrapped the data key of domain %s under version %d of local key %s",
                domain_name,
                local_wrap_version(rewrapped.wrapped),
                key.key_id,
            )
            return True
        # Its key changed since it was read (UpdateDomain, another re-wrap): look again.


def _rewrapped_already(header: LocalWrapHeader, key: LocalKey) -> bool:
    """Whether a data key with this header is under the key's active version (or a newer, pending
    one that a host which activated it wrapped under), its fingerprint that of this keyring's
    material. Not so for a bare data key (no fingerprint), nor for one under a version this
    keyring lacks or whose material differs: skipping those would report them re-wrapped."""
    return (
        header.version >= key.current.number
        and header.fingerprint is not None
        and key.version(header.version) is not None
        and not other_material(header, key)
    )


def _names(found: LocalKey | None, key: LocalKey) -> bool:
    return found is not None and found.key_id == key.key_id
