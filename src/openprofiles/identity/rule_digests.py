"""A profile's rule-match digests: the rules compiled once into a plan, applied per profile.

For every rule level up to MaxAllowedRuleLevelForMatching, a profile gets one keyed digest per
combination of its normalised values for the level's attributes (never the values themselves).
A level is made of components: a plain attribute (FirstName, Attributes.x, ...), EmailAddress or
PhoneNumber (each of the sub-types `AttributeTypesSelector` lists), or all of the level's
Address.* parts together, taken from one address. ONE_TO_ONE tags each digest with the sub-types
it was built from, so only the same sub-type compares; MANY_TO_MANY leaves the tag out.

The full rule pass computes this for every profile of a domain, so the plan does per profile
only what depends on the profile: which components each level has is worked out once per rule
set, and a component shared by several levels (a phone number, whose normalisation is most of
the work) is normalised once per profile.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from json.encoder import encode_basestring
from typing import TYPE_CHECKING, Any

from openprofiles.crypto.blind_index import DIGEST_SIZE
from openprofiles.normalize import normalize_date, normalize_email, normalize_name, normalize_phone
from openprofiles.profiles.models import ADDRESS_PARTS

if TYPE_CHECKING:
    from openprofiles.identity.matching import RuleConfig

# Sub-type names AttributeTypesSelector may list -> the profile field holding them. The model
# spells the mailing address "MaillingAddress"; BusinessAddress has no standard profile field.
SUB_TYPE_FIELDS = {
    "EmailAddress": "EmailAddress",
    "BusinessEmailAddress": "BusinessEmailAddress",
    "PersonalEmailAddress": "PersonalEmailAddress",
    "PhoneNumber": "PhoneNumber",
    "HomePhoneNumber": "HomePhoneNumber",
    "MobilePhoneNumber": "MobilePhoneNumber",
    "Address": "Address",
    "ShippingAddress": "ShippingAddress",
    "MailingAddress": "MailingAddress",
    "MaillingAddress": "MailingAddress",
}
# What the digests are computed from; stored on the domain's rules by each full pass. Raised
# when a value is compared otherwise, so domains whose digests are older are passed again
# (identity.rule_activation). 2: BirthDate as a calendar date (normalize_date).
FORMAT = 2

# A profile's digests: (level, 16-byte keyed digest) pairs.
Pair = tuple[int, bytes]
PAIR_SIZE = 1 + DIGEST_SIZE
_NAME_ATTRIBUTES = frozenset({"FirstName", "LastName", "MiddleName", "BusinessName"})

# (sub-type tag, normalised values) a component can take in one profile.
Choice = tuple[str, tuple[str, ...]]
# A component's memo key: the attribute name, or ("Address", parts) for a level's address.
_Component = str | tuple[str, tuple[str, ...]]
Digest = Callable[[str, str], bytes]


def _json_list(values: list[str]) -> str:
    """`json.dumps(values, ensure_ascii=False)` for a list of strings, the digest's input since
    the first release (stored digests depend on it), without the encoder's Python layers."""
    return "[" + ", ".join(map(encode_basestring, values)) + "]"


def address_part(address: dict[str, Any], part: str) -> str:
    """One Address.* part of an address as compared: stripped and case-folded; `Address` is the
    four address lines together."""
    if part == "Address":
        lines = [address.get(p) for p in ADDRESS_PARTS[:4]]
        raw = " ".join(v.strip() for v in lines if isinstance(v, str) and v.strip())
    else:
        value = address.get(part)
        raw = value if isinstance(value, str) else ""
    return raw.strip().casefold()


class DigestPlan:
    """The (level, digest) pairs of a profile's fields under one rule set."""

    def __init__(self, rules: RuleConfig) -> None:
        self._one_to_one = rules.one_to_one
        # Per type, the (tag, profile field) pairs its selected sub-types read.
        self._sub_fields = {
            name: tuple((s, SUB_TYPE_FIELDS.get(s, "")) for s in subs)
            for name, subs in rules.sub_types.items()
        }
        levels: list[tuple[int, tuple[_Component, ...], str]] = []
        for level, attributes in enumerate(rules.levels[: rules.max_matching], start=1):
            parts = tuple(a.split(".", 1)[1] for a in attributes if a.startswith("Address."))
            components: list[_Component] = []
            for attribute in attributes:
                if not attribute.startswith("Address."):
                    components.append(attribute)
                elif ("Address", parts) not in components:
                    components.append(("Address", parts))
            levels.append((level, tuple(components), f"_match:L{level}:*"))
        self._levels = tuple(levels)

    def digests(
        self, digest: Digest, fields: dict[str, Any], region: str
    ) -> set[tuple[int, bytes]]:
        """(level, digest) pairs of `fields`; a level whose components the profile lacks adds
        none. `digest` is the domain's keyed digest (DomainCipher.digest)."""
        out: set[tuple[int, bytes]] = set()
        memo: dict[_Component, list[Choice]] = {}
        one_to_one = self._one_to_one
        # Per profile and level, written for speed (a full pass runs it for every profile):
        # no generator expressions, the common case of one choice per component without
        # itertools.product.
        for level, components, untagged_key in self._levels:
            chosen: list[list[Choice]] = []
            single = True
            for component in components:
                choices = memo.get(component)
                if choices is None:
                    choices = memo[component] = self._choices(component, fields, region)
                if not choices:
                    break
                if len(choices) > 1:
                    single = False
                chosen.append(choices)
            else:
                combinations: Any = (
                    [[c[0] for c in chosen]] if single else itertools.product(*chosen)
                )
                for combination in combinations:
                    if one_to_one:
                        tag = ",".join([s for s, _ in combination if s])
                        key_name = f"_match:L{level}:{tag}"
                    else:
                        key_name = untagged_key
                    values = [v for _, vs in combination for v in vs]
                    out.add((level, digest(key_name, _json_list(values))))
        return out

    def _choices(self, component: _Component, fields: dict[str, Any], region: str) -> list[Choice]:
        if isinstance(component, tuple):
            choices = self._address_choices(component[1], fields)
        elif component == "EmailAddress" or component == "PhoneNumber":
            choices = self._contact_choices(component, fields, region)
        else:
            value = _plain_value(component, fields, region)
            return [("", (value,))] if value else []
        # The same value under two sub-types is one comparison under MANY_TO_MANY.
        if not self._one_to_one and choices:
            return list({values: ("", values) for _, values in choices}.values())
        return choices

    def _address_choices(self, parts: Sequence[str], fields: dict[str, Any]) -> list[Choice]:
        choices: list[Choice] = []
        for _, field_name in self._sub_fields["Address"]:
            address = fields.get(field_name)
            if not isinstance(address, dict):
                continue
            values = tuple(address_part(address, p) for p in parts)
            if all(values):
                choices.append((field_name, values))
        return choices

    def _contact_choices(self, kind: str, fields: dict[str, Any], region: str) -> list[Choice]:
        choices: list[Choice] = []
        for sub_type, field_name in self._sub_fields[kind]:
            raw = fields.get(field_name)
            if not isinstance(raw, str):
                continue
            normal = (
                normalize_email(raw) if kind == "EmailAddress" else normalize_phone(raw, region)
            )
            if normal:
                choices.append((sub_type, (normal,)))
        return choices


def _plain_value(attribute: str, fields: dict[str, Any], region: str) -> str:
    if attribute.startswith("Attributes."):
        raw = (fields.get("Attributes") or {}).get(attribute[len("Attributes.") :])
    else:
        raw = fields.get(attribute)
    if not isinstance(raw, str) or not raw.strip():
        return ""
    if attribute in _NAME_ATTRIBUTES:
        return normalize_name(raw)
    if attribute == "BirthDate":
        # A calendar date however it is written (2001-03-02, 03/02/2001 in the US), as the
        # probabilistic job compares it; other text as written.
        return normalize_date(raw, region).casefold()
    return raw.strip().casefold()


_plans: dict[Any, DigestPlan] = {}


def plan_for(rules: RuleConfig) -> DigestPlan:
    """The compiled plan of a rule set, kept: every profile write of a domain with rules uses
    one, and rule sets are few."""
    key = (rules.levels, rules.max_matching, rules.one_to_one, tuple(rules.sub_types.items()))
    plan = _plans.get(key)
    if plan is None:
        if len(_plans) >= 256:
            _plans.clear()
        plan = _plans[key] = DigestPlan(rules)
    return plan


def pack(pairs: Iterable[Pair]) -> bytes:
    """A profile's pairs as stored (rule_store) and passed between processes (rule_pass): per
    pair, in order, a level byte and the digest."""
    return b"".join(bytes((level,)) + digest for level, digest in sorted(pairs))


def unpack(packed: bytes) -> list[Pair]:
    return [
        (packed[i], bytes(packed[i + 1 : i + PAIR_SIZE])) for i in range(0, len(packed), PAIR_SIZE)
    ]
