"""Where a kept record confined to a domain goes when it is sent on and its instance has left
that domain (contacts.kept `confined_to`: a record a key limited to some domains sent, kept
waiting for the contact it continues; auth.scope).

Such a record never lands outside the domain it was sent to: not by following its instance
(contacts.moves `follow_instance` leaves it where it waits, and it is sent on at once), nor by
being sent on (contacts.service `_intake`) once its instance is associated with another domain,
or with none, which would take it. It is dead-lettered in its own domain instead, saying why
(`confined_reason`), or held for that domain while its key cannot be used; its domain deleted,
it goes with it, as the records waiting in a deleted domain do (contacts.kept).
"""

from __future__ import annotations

from dataclasses import dataclass

from openprofiles.contacts.routing import Router
from openprofiles.context import Tx
from openprofiles.dlq.sinks import dead_letter_in
from openprofiles.domains.service import find_domain
from openprofiles.integrations.models import DEFAULT_INSTANCE_OBJECT_TYPE

# The dead letter's category: the record is placed on no profile, as one that waited too long.
CATEGORY = "no_profile"


def confined_reason(domain_name: str) -> str:
    return (
        "The record was sent with an access key limited to some domains and kept in domain "
        f"{domain_name}, waiting for the contact it continues; its instance is no longer "
        "associated with this domain, and the record may not go to another. It is "
        "dead-lettered here instead."
    )


@dataclass(frozen=True)
class Placed:
    """What became of a confined record: `held` (kept for its domain, whose key cannot be used
    now), `lettered` (dead-lettered there) or neither (its domain is gone); `reason` says why."""

    reason: str
    held: bool = False
    lettered: bool = False


def keep_confined(
    tx: Tx, route: Router, *, domain_name: str, raw: str, origin: str | None, hold: bool
) -> Placed:
    """Dead-letter in `domain_name` a confined record that would leave it; with `hold`, hold
    it for the domain instead while the domain's key cannot be used (the caller keeps it,
    confined still); nothing when the domain is gone."""
    if find_domain(tx, domain_name=domain_name) is None:
        return Placed(
            f"The record was confined to domain {domain_name}, which has been deleted; it "
            "went with it."
        )
    why = route.unavailable(domain_name)
    if why is not None and hold:
        return Placed(why, held=True)
    reason = confined_reason(domain_name)
    dead_letter_in(
        tx,
        domain_name=domain_name,
        object_type_name=DEFAULT_INSTANCE_OBJECT_TYPE,
        object_json=raw,
        reason=reason,
        category=CATEGORY,
        origin=origin,
    )
    return Placed(reason, lettered=True)
