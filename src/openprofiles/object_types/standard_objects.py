"""The standard objects a mapping can target (spec §1.3) and the identifiers that link to them.

OpenProfiles writes four standard objects: `_profile`, `_asset`, `_case` and `_order`. Their
fields are those of the AWS admin guide's standard profile/asset/case/order definitions. Other
roots Customer Profiles knows (`_airBooking`, `_loyalty`, ...) are recognised so their names stay
reserved and so a mapping that targets them gets a clear "not supported" message.
"""

from __future__ import annotations

from collections.abc import Mapping

from openprofiles.profiles.models import ADDRESS_PARTS

# Structured members: a Target may name the member (a Source that yields a JSON object is copied
# part by part, spec §1.2) or one of its parts.
ORDER_ADDRESS_PARTS = ("Name", *ADDRESS_PARTS)

# root -> {field: parts (None for a plain value)}; Attributes is handled separately.
WRITABLE_FIELDS: Mapping[str, Mapping[str, tuple[str, ...] | None]] = {
    "_profile": {
        **{
            name: None
            for name in (
                "AccountNumber",
                "AdditionalInformation",
                "PartyType",
                "PartyTypeString",
                "BusinessName",
                "FirstName",
                "MiddleName",
                "LastName",
                "BirthDate",
                "Gender",
                "GenderString",
                "PhoneNumber",
                "MobilePhoneNumber",
                "HomePhoneNumber",
                "BusinessPhoneNumber",
                "EmailAddress",
                "PersonalEmailAddress",
                "BusinessEmailAddress",
                "ProfileType",
            )
        },
        **{
            name: ADDRESS_PARTS
            for name in ("Address", "ShippingAddress", "MailingAddress", "BillingAddress")
        },
    },
    # AG: standard-asset-definition
    "_asset": {
        name: None
        for name in (
            "AssetName",
            "SerialNumber",
            "ModelNumber",
            "ModelName",
            "ProductSKU",
            "PurchaseDate",
            "UsageEndDate",
            "Status",
            "Price",
            "Quantity",
            "Description",
            "AdditionalInformation",
            "DataSource",
        )
    },
    # AG: standard-case-definition
    "_case": {
        name: None
        for name in (
            "Title",
            "Summary",
            "Status",
            "Reason",
            "CreatedBy",
            "CreatedDate",
            "UpdatedDate",
            "ClosedDate",
            "AdditionalInformation",
            "DataSource",
        )
    },
    # AG: standard-order-definition. OrderItems takes a whole JSON array from the Source.
    "_order": {
        **{
            name: None
            for name in (
                "CustomerEmail",
                "CustomerPhone",
                "CreatedDate",
                "UpdatedDate",
                "ProcessedDate",
                "ClosedDate",
                "CancelledDate",
                "CancelReason",
                "Name",
                "AdditionalInformation",
                "Gateway",
                "Status",
                "StatusCode",
                "StatusUrl",
                "CreditCardNumber",
                "CreditCardCompany",
                "FulfillmentStatus",
                "TotalPrice",
                "TotalTax",
                "TotalDiscounts",
                "TotalItemsPrice",
                "TotalShippingPrice",
                "TotalTipReceived",
                "Currency",
                "TotalWeight",
                "OrderItems",
            )
        },
        "BillingAddress": ORDER_ADDRESS_PARTS,
        "ShippingAddress": ORDER_ADDRESS_PARTS,
    },
}

# Members that take a whole JSON array rather than a string or an object.
LIST_FIELDS = frozenset({("_order", "OrderItems")})

# The identifier a key must carry when a mapping writes to the standard object (rule 5).
ROOT_IDENTIFIERS: Mapping[str, str] = {
    "_asset": "ASSET",
    "_case": "CASE",
    "_order": "ORDER",
    "_communicationRecord": "COMMUNICATION_RECORD",
    "_airPreference": "AIR_PREFERENCE",
    "_hotelPreference": "HOTEL_PREFERENCE",
    "_airBooking": "AIR_BOOKING",
    "_airSegment": "AIR_SEGMENT",
    "_hotelReservation": "HOTEL_RESERVATION",
    "_hotelStayRevenue": "HOTEL_STAY_REVENUE",
    "_loyalty": "LOYALTY",
    "_loyaltyTransaction": "LOYALTY_TRANSACTION",
    "_loyaltyPromotion": "LOYALTY_PROMOTION",
    "_device": "DEVICE",
    "_webAnalytics": "WEB_ANALYTICS",
}

# The keys a standard object is indexed by, from its own fields (spec §1.11; AG:
# standard-asset-definition, standard-case-definition, standard-order-definition; the model's
# ObjectFilter.KeyName), besides the keys of the records that wrote it. ListProfileObjects
# filters by them, and SearchProfiles finds the profile that owns the object by them.
STANDARD_OBJECT_KEYS: Mapping[str, Mapping[str, str]] = {
    "_asset": {"_assetId": "AssetId", "_assetName": "AssetName", "_serialNumber": "SerialNumber"},
    "_case": {"_caseId": "CaseId"},
    "_order": {"_orderId": "OrderId"},
}
# Standard-object key name -> the standard object it finds.
STANDARD_KEY_ROOTS: Mapping[str, str] = {
    key_name: root for root, keys in STANDARD_OBJECT_KEYS.items() for key_name in keys
}

# Every standard object name; PutProfileObject on these is rejected (spec §1.6).
STANDARD_OBJECT_TYPES: frozenset[str] = frozenset(
    {"_profile", "_contact", *ROOT_IDENTIFIERS, *WRITABLE_FIELDS}
)

# System ids and read-only members that no mapping may target (spec §1.3).
FORBIDDEN_TARGETS: frozenset[str] = frozenset(
    {
        "_profile.ProfileId",
        "_profile.ImportIds",
        "_profile.FoundByItems",
        "_asset.AssetId",
        "_case.CaseId",
        "_order.OrderId",
        "_communicationRecord.CommunicationRecordId",
        "_airPreference.PreferenceId",
        "_hotelPreference.PreferenceId",
        "_airBooking.BookingId",
        "_airSegment.SegmentId",
        "_hotelReservation.ReservationId",
        "_hotelStayRevenue.StayRevenueId",
        "_loyalty.LoyaltyId",
        "_loyaltyTransaction.TransactionId",
        "_loyaltyPromotion.PromotionId",
        "_device.DeviceId",
        "_webAnalytics.EventId",
    }
)

# A target that is not written to the profile but orders updates (spec §1.3).
SOURCE_LAST_UPDATED_TARGET = "_profile.SourceLastUpdatedTimestamp"

GENDER_VALUES = frozenset({"MALE", "FEMALE", "UNSPECIFIED"})
PARTY_TYPE_VALUES = frozenset({"INDIVIDUAL", "BUSINESS", "OTHER"})
PROFILE_TYPE_VALUES = frozenset({"PROFILE", "ACCOUNT_PROFILE"})
# Enum members and where a value outside the enum goes instead (spec §7.10); None: nowhere, the
# record is refused (ingest.mapping).
ENUM_TARGETS: Mapping[str, tuple[frozenset[str], str | None]] = {
    "Gender": (GENDER_VALUES, "GenderString"),
    "PartyType": (PARTY_TYPE_VALUES, "PartyTypeString"),
    "ProfileType": (PROFILE_TYPE_VALUES, None),
}
