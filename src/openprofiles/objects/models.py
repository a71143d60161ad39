"""Records of the objects package."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class ProfileObject:
    object_type_name: str
    # The hex form of the UNIQUE key digest: opaque, stable per UNIQUE value, no personal data.
    unique_key: str
    profile_id: str
    # The object as submitted (or, for a standard object, its accumulated fields) as JSON text.
    object_json: str
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None
    # When the contact started, for an object carrying an InitiationTimestamp (a contact record).
    contact_start: datetime | None = None
    # Its place among the objects the transaction that first stored it stored (they share
    # created_at); kept when it is written again (objects.service.write_objects). With
    # created_at, its place in ListProfileObjects (objects.service.StoredAfter); with
    # updated_at, the order eviction takes objects in (objects.service.WrittenAfter).
    write_order: int = 0
