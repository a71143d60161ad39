"""RuleBasedMatching validation (spec §5.1) on its own, including the limits the wire layer
usually catches first (a caller that skips model validation reaches these)."""

from __future__ import annotations

from typing import Any

import pytest

from openprofiles.errors import BadRequest
from openprofiles.identity.rules import validate_rule_based_matching


def test_counts_over_the_limits_are_named():
    with pytest.raises(BadRequest, match="16 levels; at most 15"):
        validate_rule_based_matching({"MatchingRules": [{"Rule": ["LastName"]}] * 16})
    with pytest.raises(BadRequest, match="level 1 has 16 attributes"):
        validate_rule_based_matching(
            {"MatchingRules": [{"Rule": [f"Attributes.a{i}" for i in range(16)]}]}
        )
    with pytest.raises(BadRequest, match="level 2 names no attribute"):
        validate_rule_based_matching({"MatchingRules": [{"Rule": ["LastName"]}, {"Rule": []}]})
    with pytest.raises(BadRequest, match="EmailAddress must list between 1 and 3"):
        validate_rule_based_matching(
            {
                "AttributeTypesSelector": {
                    "AttributeMatchingModel": "ONE_TO_ONE",
                    "EmailAddress": ["EmailAddress"] * 4,
                }
            }
        )


def test_models_must_be_known():
    with pytest.raises(BadRequest, match="ONE_TO_ONE or MANY_TO_MANY"):
        validate_rule_based_matching({"AttributeTypesSelector": {"AttributeMatchingModel": "X"}})
    with pytest.raises(BadRequest, match="RECENCY or SOURCE"):
        validate_rule_based_matching({"ConflictResolution": {"ConflictResolvingModel": "X"}})


def test_the_documented_spelling_of_mailing_address_is_accepted():
    validate_rule_based_matching(
        {
            "Enabled": True,
            "AttributeTypesSelector": {
                "AttributeMatchingModel": "ONE_TO_ONE",
                "Address": ["MaillingAddress", "MailingAddress"],
            },
            "MatchingRules": [{"Rule": ["Address.Address", "Attributes.x"]}],
        }
    )
    validate_rule_based_matching(None)


TWO_LEVELS = [{"Rule": ["EmailAddress"]}, {"Rule": ["PhoneNumber"]}]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        # Past the rules given.
        (
            {"MatchingRules": TWO_LEVELS, "MaxAllowedRuleLevelForMatching": 3},
            "MaxAllowedRuleLevelForMatching must be between 1 and 2 "
            "(MatchingRules has 2 levels); got 3.",
        ),
        (
            {"MatchingRules": TWO_LEVELS[:1], "MaxAllowedRuleLevelForMerging": 2},
            "MaxAllowedRuleLevelForMerging must be between 1 and 1 "
            "(MatchingRules has 1 level); got 2.",
        ),
        # Past the levels matched: no group there to merge.
        (
            {
                "MatchingRules": TWO_LEVELS,
                "MaxAllowedRuleLevelForMatching": 1,
                "MaxAllowedRuleLevelForMerging": 2,
            },
            "MaxAllowedRuleLevelForMerging must be between 1 and 1 "
            "(MaxAllowedRuleLevelForMatching is 1); got 2.",
        ),
        # The model's range, with the default rule set (no MatchingRules).
        (
            {"MaxAllowedRuleLevelForMatching": 16},
            "MaxAllowedRuleLevelForMatching must be between 1 and 15; got 16.",
        ),
        (
            {"MaxAllowedRuleLevelForMerging": 0},
            "MaxAllowedRuleLevelForMerging must be between 1 and 15; got 0.",
        ),
    ],
)
def test_max_rule_levels_out_of_range_are_refused_not_clamped(
    config: dict[str, Any], message: str
) -> None:
    with pytest.raises(BadRequest) as exc:
        validate_rule_based_matching({"Enabled": True, **config})
    assert exc.value.message == f"RuleBasedMatching.{message}"


def test_max_rule_levels_within_the_rules_are_accepted() -> None:
    validate_rule_based_matching(
        {
            "Enabled": True,
            "MatchingRules": TWO_LEVELS,
            "MaxAllowedRuleLevelForMatching": 2,
            "MaxAllowedRuleLevelForMerging": 2,
        }
    )
    validate_rule_based_matching(
        {"Enabled": True, "MatchingRules": TWO_LEVELS, "MaxAllowedRuleLevelForMerging": 2}
    )
    # The default rule set's levels are undocumented: only the model's range applies.
    validate_rule_based_matching({"Enabled": True, "MaxAllowedRuleLevelForMatching": 15})
