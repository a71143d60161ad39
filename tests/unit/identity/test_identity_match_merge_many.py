"""Merging a match of more profiles than one merge takes, from its admin page (both backends):
a merge takes at most 20 profiles into the kept one (MergeProfiles' limit, ui.match_pages), the
confirmation says so and how many stay, and a second merge from the match's page takes the
rest: each merge one entry of the merge log, undone as a whole."""

from __future__ import annotations

from typing import Any

from openprofiles.domains.service import update_domain
from openprofiles.identity.ml_groups import MatchGroup
from openprofiles.identity.service import MAX_MERGED_PROFILES

from .conftest import DOMAIN, new_profile
from .test_identity_admin_pages import signed_in
from .test_identity_match_merge_pages import _confirm_form, _live, _merges, app
from .test_identity_ml_groups import store

__all__ = ["app"]  # a fixture


def test_a_group_of_more_than_twenty_others_is_merged_twenty_at_a_time(app: Any) -> None:
    services = app.state.services
    with services.write() as tx:
        update_domain(tx, domain_name=DOMAIN, changes={"Matching": {"Enabled": True}})
    ids = [new_profile(services, FirstName="Ada", LastName=f"L{n:02d}") for n in range(23)]
    main, others = ids[0], ids[1:]  # 22 others: two more than a merge takes
    match_id = "m".ljust(32, "0")
    pairs = tuple((0, b, 0.95, 9.0, 0) for b in range(1, len(ids)))
    store(services, [MatchGroup(match_id, tuple(ids), 0.95, pairs=pairs)])
    group_page = f"/admin/matches/{DOMAIN}/ml/{match_id}"
    with signed_in(app, "boss", "admin") as client:
        confirm = client.get(f"{group_page}/merge", params={"main": main})
        assert confirm.status_code == 200, confirm.text
        form = _confirm_form(confirm.text)
        first = [pid for pid in ids if pid != main][:MAX_MERGED_PROFILES]
        assert form["main"] == main and form["profile_id"] == first
        assert f"A merge takes at most {MAX_MERGED_PROFILES} profiles" in confirm.text
        assert "2 other profiles stay in the match" in confirm.text
        assert "ProfileIdsToBeMerged" not in confirm.text
        assert _merges(services) == []

        done = client.post(f"{group_page}/merge", data=form)
        assert done.status_code == 303, done.text
        (merge,) = _merges(services)
        assert (merge.main_profile_id, list(merge.merged_profile_ids)) == (main, first)

        # The match's page offers the rest; their merge, all of them, says nothing more.
        assert client.get(group_page).status_code == 200
        again = client.get(f"{group_page}/merge", params={"main": main})
        assert again.status_code == 200, again.text
        assert "stay in the match" not in again.text and "stays in the match" not in again.text
        rest = _confirm_form(again.text)
        assert rest["profile_id"] == others[MAX_MERGED_PROFILES:]
        assert client.post(f"{group_page}/merge", data=rest).status_code == 303
    merges = _merges(services)
    assert len(merges) == 2
    assert {(m.main_profile_id, tuple(sorted(m.merged_profile_ids))) for m in merges} == {
        (main, tuple(sorted(first))),
        (main, tuple(sorted(others[MAX_MERGED_PROFILES:]))),
    }
    assert _live(services, main)


def test_a_form_naming_more_than_a_merge_takes_merges_nothing(app: Any) -> None:
    """A sent form must be what the confirmation showed: one naming every other profile of
    such a group (not the first 20) is refused as the match having changed."""
    services = app.state.services
    with services.write() as tx:
        update_domain(tx, domain_name=DOMAIN, changes={"Matching": {"Enabled": True}})
    ids = [new_profile(services, FirstName="Ada", LastName=f"L{n:02d}") for n in range(23)]
    match_id = "m".ljust(32, "0")
    pairs = tuple((0, b, 0.95, 9.0, 0) for b in range(1, len(ids)))
    store(services, [MatchGroup(match_id, tuple(ids), 0.95, pairs=pairs)])
    group_page = f"/admin/matches/{DOMAIN}/ml/{match_id}"
    with signed_in(app, "boss", "admin") as client:
        form = _confirm_form(client.get(f"{group_page}/merge", params={"main": ids[0]}).text)
        sent = client.post(f"{group_page}/merge", data={**form, "profile_id": ids[1:]})
        assert sent.status_code == 409
        assert "Nothing was merged" in sent.text
        assert "ProfileIdsToBeMerged" not in sent.text
    assert _merges(services) == []
