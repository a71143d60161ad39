"""RuleBasedMatching validation (spec §5.1) on its own, including the limits the wire layer
usually catches first (a caller that skips model validation reaches these)."""

from __future__ import annotations

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
