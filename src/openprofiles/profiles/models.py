"""Records of the profiles package.

Standard-profile fields keep the names the API gives them (`FirstName`, `Address.City`): they are
data here, the names object-type mappings target (`_profile.FirstName`), not Python identifiers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

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
# Members replaced as a whole rather than merged field by field.
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


@dataclass
class ProfileRecord:
    profile_id: str
    fields: dict[str, Any]
    version: int
    created_at: datetime
    updated_at: datetime
    # Field paths ("FirstName", "Address.City", "Attributes.Tier") last set by a person through
    # CreateProfile/UpdateProfile; ingestion does not overwrite them (spec §1.8).
    manual_fields: set[str] = field(default_factory=set)

    def sealed_payload(self) -> dict[str, Any]:
        return {"fields": self.fields, "manual": sorted(self.manual_fields)}


@dataclass(frozen=True)
class KeyMatch:
    """A key/value pair of a search that found a profile (FoundByItems)."""

    key_name: str
    values: tuple[str, ...]
