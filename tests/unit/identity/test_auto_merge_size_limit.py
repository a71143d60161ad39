"""An automatic merge whose merged profile would pass the profile size limit (profiles.size) is
left out, and the write that found the match still applies: before, the limit's error came out
of the rule pass and refused the write that triggered it (a profile update, a whole batch of
records). Both backends."""

from __future__ import annotations

import json
from typing import Any

from openprofiles.context import Services
from openprofiles.ingest.pipeline import ingest_batch
from openprofiles.profiles import service as profiles
from openprofiles.profiles.size import MAX_PROFILE_BYTES

from .conftest import DOMAIN, fields_of, new_profile, search
from .test_identity_matching import enable

RULES: dict[str, Any] = {
    "MatchingRules": [{"Rule": ["EmailAddress"]}],
    "MaxAllowedRuleLevelForMerging": 1,
}
# Each profile well under the limit, the two together over it.
HALF = MAX_PROFILE_BYTES * 3 // 5


def test_an_update_that_matches_a_profile_too_large_to_merge_with_still_applies(
    services: Services, domain: str
) -> None:
    enable(services, **RULES)
    a = new_profile(services, EmailAddress="same@x.com", Attributes={"n1": "a" * HALF})
    b = new_profile(services, Attributes={"n2": "b" * HALF})
    with services.write() as tx:
        profiles.update_profile(
            tx, domain_name=DOMAIN, profile_id=b, changes={"EmailAddress": "same@x.com"}
        )
    assert fields_of(services, b)["EmailAddress"] == "same@x.com"
    # Not merged: both live, each with its own note.
    assert sorted(search(services, "_email", "same@x.com")) == sorted([a, b])
    assert fields_of(services, a)["Attributes"] == {"n1": "a" * HALF}


def test_a_batch_whose_auto_merge_would_be_too_large_applies_every_record(
    services: Services, domain: str
) -> None:
    enable(services, **RULES)
    a = new_profile(services, EmailAddress="same@x.com", Attributes={"n1": "a" * HALF})

    def crm(*records: dict[str, str]) -> list[Any]:
        with services.write() as tx:
            return ingest_batch(
                tx,
                domain_name=DOMAIN,
                object_type_name="Crm",
                records=[(r, json.dumps(r)) for r in records],
            )

    crm({"id": "c2", "first": "Bee"})
    [b] = search(services, "crmId", "c2")
    with services.write() as tx:
        profiles.update_profile(
            tx, domain_name=DOMAIN, profile_id=b, changes={"Attributes": {"n2": "b" * HALF}}
        )
    # c2's email now matches A: the merge would be too large, and c2's record still applies.
    outcomes = crm({"id": "c2", "email": "same@x.com"}, {"id": "c3", "first": "Cee"})
    assert [type(o).__name__ for o in outcomes] == ["IngestResult", "IngestResult"]
    assert fields_of(services, b)["EmailAddress"] == "same@x.com"
    assert sorted(search(services, "_email", "same@x.com")) == sorted([a, b])
    assert len(search(services, "crmId", "c3")) == 1
