"""Why profiles match: the one explanation of a match that both the CLI (`openprofiles matches
list|explain|explain-ml`) and the admin match pages show.

A rule-based match (spec §5.1) is explained by its rule level and the attributes that level
ANDs: the group's profiles have equal normalised values for all of them (their match digests are
equal). The values themselves are opened from the profiles only when asked for (`with_values`,
the CLI's --show-values); the explanation otherwise holds no personal data. An ML match group
(spec §5.2) is explained by its confidence score and, for each pair of profiles that links the
group, the pair's match probability and weight and every attribute's Splink comparison level
and match weight — labels and numbers only, never a value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from openprofiles.context import Tx
from openprofiles.domains.service import get_domain
from openprofiles.identity import matching, ml_jobs
from openprofiles.identity.matching import RuleMatch
from openprofiles.identity.ml_jobs import JobRecord, MatchGroup, MatchPage


@dataclass(frozen=True)
class RuleExplanation:
    match: RuleMatch
    # Per profile id, the level's attribute values (sub-type -> value); None unless asked for.
    values: dict[str, dict[str, str]] | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "MatchId": self.match.match_id,
            "MatchType": matching.MATCH_TYPE,
            "RuleLevel": self.match.level,
            "Attributes": list(self.match.attributes),
            "ProfileIds": list(self.match.profile_ids),
        }
        if self.values is not None:
            out["Values"] = self.values
        return out


@dataclass(frozen=True)
class MlExplanation:
    group: MatchGroup

    def as_json(self) -> dict[str, Any]:
        return {
            "MatchId": self.group.match_id,
            "MatchType": ml_jobs.MATCH_TYPE,
            "ConfidenceScore": self.group.confidence,
            "ProfileIds": list(self.group.profile_ids),
            "Pairs": self.group.explanation,
        }


def rule_matches(
    tx: Tx, *, domain_name: str, limit: int, after: str | None = None
) -> tuple[list[RuleMatch], bool]:
    """The domain's rule-based matches (level, attributes, profiles) in MatchId order after
    `after`; the flag says more follow. BadRequest when rule-based matching is off."""
    ids, more = matching.list_matches(tx, domain_name=domain_name, limit=limit, after=after)
    return [matching.get_match(tx, domain_name=domain_name, match_id=m) for m in ids], more


def explain_rule_match(
    tx: Tx, *, domain_name: str, match_id: str, with_values: bool = False
) -> RuleExplanation:
    match = matching.get_match(tx, domain_name=domain_name, match_id=match_id)
    values = (
        matching.matched_values(tx, domain_name=domain_name, match=match) if with_values else None
    )
    return RuleExplanation(match, values)


def explain_ml_match(tx: Tx, *, domain_name: str, match_id: str) -> MlExplanation:
    return MlExplanation(ml_jobs.get_group(tx, domain_name=domain_name, match_id=match_id))


@dataclass(frozen=True)
class MatchOverview:
    """A domain's matches of both kinds; a kind that is off has `*_enabled` False."""

    rule_enabled: bool
    rule_matches: list[RuleMatch]
    rule_more: bool
    ml_enabled: bool
    ml_page: MatchPage | None
    latest_job: JobRecord | None


def match_overview(
    tx: Tx,
    *,
    domain_name: str,
    limit: int,
    rule_after: str | None = None,
    ml_after: str | None = None,
) -> MatchOverview:
    """One page of each kind of match; NotFound for an unknown domain."""
    config = get_domain(tx, domain_name=domain_name).config
    rule_enabled = matching.rule_config(config) is not None
    found, rule_more = (
        rule_matches(tx, domain_name=domain_name, limit=limit, after=rule_after)
        if rule_enabled
        else ([], False)
    )
    ml_enabled = bool((config.get("Matching") or {}).get("Enabled"))
    page = latest = None
    if ml_enabled:
        page = ml_jobs.list_groups(tx, domain_name=domain_name, limit=limit, after=ml_after)
        jobs, _ = ml_jobs.list_jobs(tx, domain_name=domain_name, limit=1)
        latest = jobs[0] if jobs else None
    return MatchOverview(rule_enabled, found, rule_more, ml_enabled, page, latest)
