"""Undoing a merge after the agent re-linked a contact elsewhere (contacts.links,
identity.service.undo_merge): the merged profile gets its link back, marked as superseded, and
the later link still wins."""

from __future__ import annotations

from sqlalchemy import select
from tests.unit.contacts.test_contacts_without_endpoint import (
    CALLER,
    D,
    contacts_of,
    link,
    linked_to,
    new_profile,
    with_template,
)
from tests.unit.integrations.integ_helpers import ctr, send

from openprofiles.context import Services
from openprofiles.identity.service import merge_profiles, undo_merge
from openprofiles.store.schema import profile_key


def contact_rows(services: Services, profile_id: str) -> list[str]:
    with services.read() as tx:
        return sorted(
            tx.conn.execute(
                select(profile_key.c.origin).where(
                    profile_key.c.domain_name == D,
                    profile_key.c.profile_id == profile_id,
                    profile_key.c.key_name == "_ctrContactId",
                )
            ).scalars()
        )


def test_undo_after_a_relink_gives_the_link_back_superseded(services: Services) -> None:
    """The undo matched only the logged origin: the main profile kept the superseded row, the
    merged profile got nothing back, and the key was both kept and missing."""
    with_template(services, "CTR")
    a, m, b = (new_profile(services, FirstName=n) for n in ("A", "M", "B"))
    link(services, a, "c-1")
    with services.write() as tx:
        merge = merge_profiles(tx, domain_name=D, main_profile_id=m, profile_ids=[a])
    link(services, b, "c-1")  # the agent's latest link

    with services.write() as tx:
        undone = undo_merge(tx, domain_name=D, merge_id=merge.merge_id)

    assert not undone.kept_keys and not undone.missing_keys
    assert contact_rows(services, a) == ["@relinked"]
    assert contact_rows(services, m) == [] and contact_rows(services, b) == ["@explicit"]
    assert linked_to(services, "c-1") == sorted([a, b])
    # The record comes: the latest link wins.
    assert send(services, ctr("c-1", address=CALLER)).accepted == 1
    assert contacts_of(services, b, "CTR") == ["c-1"]
    assert linked_to(services, "c-1") == [b]
