"""Validation of `RuleBasedMatching` as CreateDomain/UpdateDomain receive it (spec §5.1).

The wire layer checks the model's shapes (counts, enums) when the client validates; these checks
run on the server whatever the client sent, and name exactly what is wrong.
"""

from __future__ import annotations

from typing import Any

from openprofiles.errors import BadRequest

MAX_LEVELS = 15
MAX_ATTRIBUTES = 15

# What a rule may name (spec §5.1; the MODEL's MatchingRule doc): type names only, never the
# sub-types (BusinessEmailAddress, ...), which AttributeTypesSelector chooses instead.
RULE_ATTRIBUTES = frozenset(
    {
        "AccountNumber",
        "Address.Address",
        "Address.City",
        "Address.Country",
        "Address.County",
        "Address.PostalCode",
        "Address.State",
        "Address.Province",
        "BirthDate",
        "BusinessName",
        "EmailAddress",
        "FirstName",
        "Gender",
        "LastName",
        "MiddleName",
        "PhoneNumber",
    }
)
CUSTOM_PREFIX = "Attributes."

# Sub-types AttributeTypesSelector may list per type, with the most allowed. The model's doc
# spells the mailing address "MaillingAddress"; both spellings are accepted (spec §5.1).
SELECTOR_TYPES: dict[str, tuple[frozenset[str], int]] = {
    "Address": (
        frozenset(
            {"Address", "BusinessAddress", "MailingAddress", "MaillingAddress", "ShippingAddress"}
        ),
        4,
    ),
    "PhoneNumber": (frozenset({"PhoneNumber", "HomePhoneNumber", "MobilePhoneNumber"}), 4),
    "EmailAddress": (
        frozenset({"EmailAddress", "BusinessEmailAddress", "PersonalEmailAddress"}),
        3,
    ),
}
MATCHING_MODELS = ("ONE_TO_ONE", "MANY_TO_MANY")
CONFLICT_MODELS = ("RECENCY", "SOURCE")


def validate_rule_based_matching(config: dict[str, Any] | None) -> None:
    """Raise BadRequest naming the first problem of a RuleBasedMatching configuration."""
    if config is None:
        return
    rules = config.get("MatchingRules") or []
    if len(rules) > MAX_LEVELS:
        raise BadRequest(
            f"RuleBasedMatching.MatchingRules has {len(rules)} levels; at most {MAX_LEVELS} "
            "are allowed."
        )
    for level, rule in enumerate(rules, start=1):
        attributes = list((rule or {}).get("Rule") or [])
        where = f"RuleBasedMatching.MatchingRules level {level}"
        if not attributes:
            raise BadRequest(f"{where} names no attribute.")
        if len(attributes) > MAX_ATTRIBUTES:
            raise BadRequest(
                f"{where} has {len(attributes)} attributes; at most {MAX_ATTRIBUTES} are allowed."
            )
        for attribute in attributes:
            custom = attribute.startswith(CUSTOM_PREFIX) and len(attribute) > len(CUSTOM_PREFIX)
            if attribute not in RULE_ATTRIBUTES and not custom:
                raise BadRequest(
                    f"{where} names the unknown attribute {attribute}; allowed are "
                    f"{', '.join(sorted(RULE_ATTRIBUTES))} and Attributes.<name>."
                )
        repeated = sorted({a for a in attributes if attributes.count(a) > 1})
        if repeated:
            raise BadRequest(f"{where} names {', '.join(repeated)} more than once.")
    _validate_max_levels(config, len(rules))
    _validate_selector(config.get("AttributeTypesSelector"))
    resolution = config.get("ConflictResolution")
    if resolution is not None and resolution.get("ConflictResolvingModel") not in CONFLICT_MODELS:
        raise BadRequest(
            "RuleBasedMatching.ConflictResolution.ConflictResolvingModel must be RECENCY or SOURCE."
        )


def _validate_max_levels(config: dict[str, Any], levels: int) -> None:
    """The two maximum rule levels name levels that exist: MaxAllowedRuleLevelForMatching one
    of MatchingRules' levels, MaxAllowedRuleLevelForMerging one of the levels matched.

    A value out of range is refused, never clamped: neither the model (which documents only
    1-15) nor the admin guide (spec §5.1) says the service lowers it, and a lowered value would
    silently match or auto-merge (irreversibly) other than the request said. Without
    MatchingRules the cloud service's default rule set applies, whose number of levels is
    undocumented (spec §5.1): only the model's 1-15 is checked then, so a configuration the
    cloud service takes is taken here too; ours (matching.DEFAULT_MATCHING_RULES) matches at
    all its levels when a higher one is named."""
    limit, why = MAX_LEVELS, ""
    if levels:
        limit, why = levels, f" (MatchingRules has {levels} level{'s' if levels > 1 else ''})"
    matching = config.get("MaxAllowedRuleLevelForMatching")
    _check_level("MaxAllowedRuleLevelForMatching", matching, limit, why)
    if matching is not None and matching < limit:
        # Only groups found at a level up to the matching level exist to be merged.
        limit, why = matching, f" (MaxAllowedRuleLevelForMatching is {matching})"
    _check_level(
        "MaxAllowedRuleLevelForMerging", config.get("MaxAllowedRuleLevelForMerging"), limit, why
    )


def _check_level(name: str, value: int | None, limit: int, why: str) -> None:
    if value is not None and not 1 <= value <= limit:
        raise BadRequest(
            f"RuleBasedMatching.{name} must be between 1 and {limit}{why}; got {value}."
        )


def _validate_selector(selector: dict[str, Any] | None) -> None:
    if selector is None:
        return
    where = "RuleBasedMatching.AttributeTypesSelector"
    if selector.get("AttributeMatchingModel") not in MATCHING_MODELS:
        raise BadRequest(f"{where}.AttributeMatchingModel must be ONE_TO_ONE or MANY_TO_MANY.")
    for type_name, (allowed, most) in SELECTOR_TYPES.items():
        chosen = selector.get(type_name)
        if chosen is None:
            continue
        if not 1 <= len(chosen) <= most:
            raise BadRequest(f"{where}.{type_name} must list between 1 and {most} types.")
        for sub_type in chosen:
            if sub_type not in allowed:
                raise BadRequest(
                    f"{where}.{type_name} cannot list {sub_type}; it takes "
                    f"{', '.join(sorted(allowed - {'MaillingAddress'}))}."
                )
