"""Match features stored at write time (identity.ml_features), on both backends: kept current by
every write path of a domain with Matching enabled (create, update, merge and its undo, delete,
ingestion one record and a batch at a time), absent for a domain without Matching, recomputed
by a job when missing or stale, deleted with the profile and the domain; and the compact form
of stored explanations (identity.ml_jobs)."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import delete, func, insert, select, update

from openprofiles.context import Services
from openprofiles.domains.service import delete_domain, update_domain
from openprofiles.identity import ml_features, ml_jobs, service
from openprofiles.ingest.pipeline import ingest_batch
from openprofiles.profiles import service as profiles
from openprofiles.store.schema import ml_feature, ml_match_page

from .conftest import DOMAIN, ingest, make_domain, new_profile

MARGARET = {
    "FirstName": " Margaret ",
    "LastName": "Hamilton",
    "EmailAddress": "Margaret.Hamilton@Example.com",
    "PhoneNumber": "(206) 555-0101",
    "BirthDate": "1936-08-17",
    "Address": {"City": "Boston", "PostalCode": "02 139"},
}
MARGARET_VALUES = [
    "margaret",
    "hamilton",
    "margaret.hamilton@example.com",
    "+12065550101",
    "02139",
    "boston",
    "1936-08-17",
]


def set_matching(services: Services, enabled: bool, domain: str = DOMAIN) -> None:
    with services.write() as tx:
        update_domain(tx, domain_name=domain, changes={"Matching": {"Enabled": enabled}})


def stored(services: Services, domain: str = DOMAIN) -> dict[str, dict[str, Any]]:
    """The domain's feature rows, opened: profile id -> {"v": version, "b": basis, "f": values}."""
    with services.read() as tx:
        cipher = tx.cipher(domain)
        rows = tx.conn.execute(
            select(ml_feature.c.profile_id, ml_feature.c.sealed).where(
                ml_feature.c.domain_name == domain
            )
        ).all()
        opened = cipher.open_lists(ml_features.FEATURE_TABLE, [(p, bytes(s)) for p, s in rows])
        return {
            pid: {"v": payload[0], "b": payload[1], "f": payload[2:]}
            for (pid, _), payload in zip(rows, opened, strict=True)
        }


def feature_rows(services: Services) -> int:
    with services.read() as tx:
        return int(tx.conn.execute(select(func.count()).select_from(ml_feature)).scalar_one())


def test_create_and_update_keep_the_row_current(services: Services, domain: str) -> None:
    set_matching(services, True)
    pid = new_profile(services, **MARGARET)
    row = stored(services)[pid]
    assert row["v"] == 1 and row["f"] == MARGARET_VALUES
    assert row["b"] == ml_features.basis(services.settings.default_phone_region)
    with services.write() as tx:
        profiles.update_profile(
            tx, domain_name=DOMAIN, profile_id=pid, changes={"LastName": "Smith", "PhoneNumber": ""}
        )
    row = stored(services)[pid]
    assert row["v"] == 2
    assert row["f"] == ["margaret", "smith", MARGARET_VALUES[2], None, *MARGARET_VALUES[4:]]


def test_a_birth_date_written_month_first_is_the_same_date(services: Services, domain: str) -> None:
    """Sources write birth dates both ways; the job compares calendar dates (default region
    US: month first)."""
    set_matching(services, True)
    iso = new_profile(services, **MARGARET)
    us = new_profile(services, **{**MARGARET, "BirthDate": "08/17/1936"})
    rows = stored(services)
    assert rows[iso]["f"][6] == rows[us]["f"][6] == "1936-08-17"


def test_a_domain_without_matching_stores_none(services: Services, domain: str) -> None:
    pid = new_profile(services, **MARGARET)
    with services.write() as tx:
        profiles.update_profile(tx, domain_name=DOMAIN, profile_id=pid, changes={"LastName": "X"})
    ingest(services, {"id": "c1", "email": "a@example.com", "first": "Ann"})
    assert feature_rows(services) == 0


def test_rows_are_sealed_and_bound_to_their_profile(services: Services, domain: str) -> None:
    set_matching(services, True)
    first = new_profile(services, **MARGARET)
    second = new_profile(services, FirstName="Grace")
    with services.read() as tx:
        sealed = dict(tx.conn.execute(select(ml_feature.c.profile_id, ml_feature.c.sealed)).all())
    raw = bytes(sealed[first])
    for value in MARGARET_VALUES:
        assert value.encode() not in raw
    # A row copied onto another profile's does not open as that profile's.
    with services.write() as tx:
        tx.conn.execute(
            update(ml_feature).where(ml_feature.c.profile_id == second).values(sealed=sealed[first])
        )
    with services.read() as tx:
        cipher = tx.cipher(DOMAIN)
        try:
            list(cipher.open_lists(ml_features.FEATURE_TABLE, [(second, raw)]))
        except Exception as exc:
            assert type(exc).__name__ == "DecryptionError"
        else:
            raise AssertionError("a row sealed for one profile opened as another's")
    # A job takes such a row for a missing one: recomputed from the profile, and stored again.
    with services.write() as tx:
        table = ml_features.live_features(tx, DOMAIN)
    by_id = {table.row(i)["unique_id"]: table.row(i) for i in range(len(table))}
    assert by_id[second]["first_name"] == "grace" and by_id[first]["last_name"] == "hamilton"
    assert stored(services)[second]["f"][0] == "grace"


def test_merge_forgets_the_merged_away_and_undo_writes_them_again(
    services: Services, domain: str
) -> None:
    set_matching(services, True)
    main = new_profile(services, **MARGARET)
    other = new_profile(services, FirstName="Margret", LastName="Hamilton", BirthDate="1936")
    with services.write() as tx:
        merge = service.merge_profiles(
            tx, domain_name=DOMAIN, main_profile_id=main, profile_ids=[other]
        )
    rows = stored(services)
    assert set(rows) == {main}
    assert rows[main]["v"] == 2
    with services.write() as tx:
        service.undo_merge(tx, domain_name=DOMAIN, merge_id=merge.merge_id)
    rows = stored(services)
    assert set(rows) == {main, other}
    assert rows[other]["f"][:2] == ["margret", "hamilton"]
    with services.read() as tx:
        versions = {
            r.profile_id: r.version
            for r in profiles.get_profiles(
                tx, domain_name=DOMAIN, profile_ids=[main, other]
            ).values()
        }
    assert {pid: row["v"] for pid, row in rows.items()} == versions


def test_delete_profile_and_domain_delete_the_rows(services: Services, domain: str) -> None:
    set_matching(services, True)
    gone = new_profile(services, **MARGARET)
    kept = new_profile(services, FirstName="Grace")
    with services.write() as tx:
        profiles.delete_profile(tx, domain_name=DOMAIN, profile_id=gone)
    assert set(stored(services)) == {kept}
    with services.write() as tx:
        delete_domain(tx, domain_name=DOMAIN)
    assert feature_rows(services) == 0


def test_ingestion_keeps_the_rows_current(services: Services, domain: str) -> None:
    set_matching(services, True)
    one = ingest(services, {"id": "c1", "email": "Ann@Example.com", "first": "Ann"}).profile_id
    with services.write() as tx:
        results = ingest_batch(
            tx,
            domain_name=DOMAIN,
            object_type_name="Crm",
            records=[
                (obj, json.dumps(obj))
                for obj in (
                    {"id": "c2", "email": "bo@example.com", "first": "Bo"},
                    {"id": "c1", "email": "ann@example.com", "first": "Anne"},
                    {"id": "c3", "email": "cy@example.com", "first": "Cy"},
                )
            ],
        )
    ids = [r.profile_id for r in results]  # type: ignore[union-attr]
    assert ids[1] == one
    rows = stored(services)
    assert set(rows) == {one, ids[0], ids[2]}
    assert rows[one]["f"][0] == "anne" and rows[one]["f"][2] == "ann@example.com"
    assert rows[ids[2]]["f"][0] == "cy"
    with services.read() as tx:
        versions = {
            r.profile_id: r.version
            for r in profiles.get_profiles(tx, domain_name=DOMAIN, profile_ids=list(rows)).values()
        }
    assert {pid: row["v"] for pid, row in rows.items()} == versions


def test_a_job_recomputes_missing_and_stale_rows(services: Services, domain: str) -> None:
    # Written while Matching was off: no row, then one left behind by a later change.
    missing = new_profile(services, **MARGARET)
    set_matching(services, True)
    stale = new_profile(services, FirstName="Grace", LastName="Hopper")
    set_matching(services, False)
    with services.write() as tx:
        profiles.update_profile(
            tx, domain_name=DOMAIN, profile_id=stale, changes={"LastName": "Murray"}
        )
    set_matching(services, True)
    assert stored(services)[stale]["f"][1] == "hopper"
    with services.write() as tx:
        table = ml_features.live_features(tx, DOMAIN)
    by_id = {table.row(i)["unique_id"]: table.row(i) for i in range(len(table))}
    assert by_id[missing]["phone"] == "+12065550101"
    assert by_id[stale]["last_name"] == "murray"
    rows = stored(services)
    assert rows[missing]["f"] == MARGARET_VALUES and rows[missing]["v"] == 1
    assert rows[stale]["f"][1] == "murray" and rows[stale]["v"] == 2
    # Stored again, the rows are used as they are: the same values come back.
    with services.write() as tx:
        again = ml_features.live_features(tx, DOMAIN)
    assert again.columns == table.columns


def test_a_row_of_another_basis_is_recomputed(
    services: Services, domain: str, monkeypatch: Any
) -> None:
    set_matching(services, True)
    pid = new_profile(services, **MARGARET)
    monkeypatch.setattr(ml_features, "FORMAT", ml_features.FORMAT + 1)
    with services.write() as tx:
        ml_features.live_features(tx, DOMAIN)
    assert stored(services)[pid]["b"] == ml_features.basis(services.settings.default_phone_region)
    assert stored(services)[pid]["b"].startswith(f"{ml_features.FORMAT}:")


def explained_groups(services: Services) -> list[tuple[tuple[str, ...], float, Any]]:
    with services.read() as tx:
        page = ml_jobs.list_groups(tx, domain_name=DOMAIN)
        full = [ml_jobs.get_group(tx, domain_name=DOMAIN, match_id=g.match_id) for g in page.groups]
    return sorted((g.profile_ids, g.confidence, g.explanation) for g in full)


def test_a_job_on_stored_rows_finds_what_it_finds_on_recomputed_ones(
    services: Services, domain: str
) -> None:
    set_matching(services, True)
    a = new_profile(services, **MARGARET)
    b = new_profile(services, **{**MARGARET, "FirstName": "Margret", "EmailAddress": ""})
    new_profile(services, FirstName="Edsger", LastName="Dijkstra", PhoneNumber="+31 20 555 0400")
    job = ml_jobs.run_matching_job(services, domain_name=DOMAIN)
    assert job.status == ml_jobs.COMPLETED and job.matches_found == 1
    from_stored = explained_groups(services)
    ((ids, confidence, explanation),) = from_stored
    assert ids == tuple(sorted((a, b)))
    (pair,) = explanation
    assert pair["ProfileIds"] == sorted((a, b))
    assert round(pair["MatchProbability"], 6) == confidence
    assert [x["Attribute"] for x in pair["Attributes"]] == list(ml_jobs.ATTRIBUTES.values())
    with services.write() as tx:
        tx.conn.execute(delete(ml_feature))
    ml_jobs.run_matching_job(services, domain_name=DOMAIN)
    assert explained_groups(services) == from_stored
    assert feature_rows(services) == 3


def test_groups_stored_before_the_compact_form_are_still_explained(
    services: Services, domain: str
) -> None:
    set_matching(services, True)
    job = ml_jobs.run_matching_job(services, domain_name=DOMAIN)
    old = [
        {
            "ProfileIds": ["p1", "p2"],
            "MatchProbability": 0.95,
            "MatchWeight": 4.2,
            "Attributes": [{"Attribute": "FirstName", "Level": "Exact match", "MatchWeight": 3.1}],
        }
    ]
    with services.write() as tx:
        tx.conn.execute(
            insert(ml_match_page).values(
                domain_name=DOMAIN,
                first_match_id="m" * 32,
                job_id=job.job_id,
                group_count=1,
                groups=[["m" * 32, 0.95, ["p1", "p2"], old]],
            )
        )
    with services.read() as tx:
        group = ml_jobs.get_group(tx, domain_name=DOMAIN, match_id="m" * 32)
    assert group.explanation == old and group.profile_ids == ("p1", "p2")


def test_a_second_domain_keeps_its_own_rows(services: Services, domain: str) -> None:
    other = make_domain(services, "other")
    set_matching(services, True)
    set_matching(services, True, other)
    mine = new_profile(services, **MARGARET)
    theirs = new_profile(services, other, FirstName="Grace")
    assert set(stored(services)) == {mine}
    assert set(stored(services, other)) == {theirs}
