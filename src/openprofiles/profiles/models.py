"""Records of the profiles package.

Standard-profile fields keep the names the API gives them (`FirstName`, `Address.City`): they are
data here, the names object-type mappings target (`_profile.FirstName`), not Python identifiers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# The table name sealed profiles are bound to (their associated data names it).
PROFILE_TABLE = "profile"

# Members of the standard profile that hold an address structure.
ADDRESS_FIELDS = ("Address", "ShippingAddress", "MailingAddress", "BillingAddress")
ADDRESS_PARTS = (
    "Address1",
    "Address2",
    "Address3",
    "Address4",
    "City",
    "County",
    "State",
    "Province",
    "Country",
    "PostalCode",
)
# Members that are one path (manual protection, field sources, merges) rather than one per part.
# UpdateProfile still changes their members one by one (profiles.service `updated_fields`).
WHOLE_VALUE_FIELDS = ("EngagementPreferences",)
STRING_FIELDS = (
    "AccountNumber",
    "AdditionalInformation",
    "PartyType",
    "BusinessName",
    "FirstName",
    "MiddleName",
    "LastName",
    "BirthDate",
    "Gender",
    "PhoneNumber",
    "MobilePhoneNumber",
    "HomePhoneNumber",
    "BusinessPhoneNumber",
    "EmailAddress",
    "PersonalEmailAddress",
    "BusinessEmailAddress",
    "PartyTypeString",
    "GenderString",
    "ProfileType",
)
PROFILE_FIELDS = (*STRING_FIELDS, *ADDRESS_FIELDS, "Attributes", *WHOLE_VALUE_FIELDS)


# Fields that are one: a gender or party type is held either in the enum field or, for a value
# outside the enum, in its free-text twin (ingest.mapping; a mapping may target only one of
# them), and FieldSourceProfileIds names only the enum field. The first name is the unit's.
# Merges decide each unit as one field (identity.service, identity.matching), and ingestion
# writes it as one (ingest.pipeline.apply_profile_fields).
_FIELD_UNITS: dict[str, tuple[str, ...]] = {
    "Gender": ("Gender", "GenderString"),
    "GenderString": ("Gender", "GenderString"),
    "PartyType": ("PartyType", "PartyTypeString"),
    "PartyTypeString": ("PartyType", "PartyTypeString"),
}


def unit_members(name: str) -> tuple[str, ...]:
    """The fields taken together with the top-level field `name` (itself alone for most)."""
    return _FIELD_UNITS.get(name, (name,))


def holds_path(fields: dict[str, Any], path: str) -> bool:
    """Whether the profile's `fields` hold a value at a field path ("FirstName",
    "Address.City", "Attributes.Tier"; `ProfileRecord.manual_fields`)."""
    name, _, part = path.partition(".")
    if not part:
        return name in fields
    value = fields.get(name)
    return isinstance(value, dict) and part in value


@dataclass
class ProfileRecord:
    profile_id: str
    fields: dict[str, Any]
    version: int
    created_at: datetime
    updated_at: datetime
    # Field paths ("FirstName", "Address.City", "Attributes.Tier") last set by a person through
    # CreateProfile/UpdateProfile; ingestion does not overwrite them (spec §1.8). A path a
    # person cleared (UpdateProfile "") stays here without a value, so that ingestion does not
    # fill it again (`cleared_paths`); it counts to the profile's size (profiles.size).
    manual_fields: set[str] = field(default_factory=set)
    # Field path -> {"type": object type name, "priority": SourcePriority or None} for values
    # written by ingestion, so a lower-priority type cannot overwrite a higher one and
    # DeleteProfileObjectType can scrub what a type populated (spec §1.8).
    field_sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The length of the record's sealed blob as last read or written, when known: a bound of
    # its size that costs nothing to keep (profiles.size).
    sealed_size: int | None = field(default=None, compare=False, repr=False)

    def cleared_paths(self) -> list[str]:
        """The manual paths without a value (cleared by a person), sorted."""
        return sorted(p for p in self.manual_fields if not holds_path(self.fields, p))

    def sealed_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {"fields": self.fields, "manual": sorted(self.manual_fields)}
        if self.field_sources:
            payload["sources"] = self.field_sources
        return payload


@dataclass(frozen=True)
class KeyMatch:
    """A key/value pair of a search that found a profile (FoundByItems)."""

    key_name: str
    values: tuple[str, ...]
